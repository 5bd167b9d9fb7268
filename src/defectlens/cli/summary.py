"""Summaries the commands print: a training run, an evaluation, dataset statistics.

Tables put metrics in rows and splits in columns, so they fit an 80-column terminal whatever the
number of splits; every value comes from the library's result objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from defectlens.cli.output import fmt, safe, table
from defectlens.evaluation.metrics import HEADLINE, SCALARS

if TYPE_CHECKING:
    from defectlens.evaluation.evaluate import EvaluationResult
    from defectlens.training import RunResult
    from defectlens.workflows.recipes import ExpectedRange

_NAMES = dict(SCALARS)


def metrics_table(title: str, metrics: dict[str, dict[str, Any]], keys: tuple[str, ...] = HEADLINE) -> Any:
    """Metric rows x split columns, skipping metrics no split has."""
    splits = list(metrics)
    rows = [
        [_NAMES.get(k, k), *(fmt(metrics[s].get(k)) for s in splits)]
        for k in keys
        if any(metrics[s].get(k) is not None for s in splits)
    ]
    return table(title, ["metric", *splits], rows)


def print_run(console: Console, result: RunResult, *, title: str = "training run") -> None:
    """Best epoch, evaluated metrics per split, the operating point and the run folder."""
    console.print(f"{title}: best epoch {result.best_epoch}, val macro-F1 {result.best_val_macro_f1:.4f}")
    if result.metrics:
        console.print(metrics_table("evaluated on", result.metrics))
    spec = result.spec
    if spec.threshold is not None:
        console.print(f"threshold {spec.threshold:.4f} on P({spec.positive_class}), temperature {spec.temperature:.3f}")
    console.print(f"time {result.seconds:.0f}s")
    console.print("run folder:")
    console.print(str(result.run_dir), overflow="ignore", crop=False)


def print_expected(console: Console, test: dict[str, Any], ranges: list[ExpectedRange], cpu: str) -> None:
    """The run's test accuracy beside the recipe's measured seed range on this CPU (others listed too), so a
    user can tell a normal result from a broken install."""
    from defectlens.workflows.recipes import range_for_cpu

    accuracy = test.get("accuracy")
    if accuracy is None or not ranges:
        return
    mine = range_for_cpu(ranges, cpu)
    parts = []
    for r in [mine] if mine else []:
        where = "this CPU" if r.cpu == cpu else f"{r.cpu}, the nearest measured to this {cpu}"
        parts.append(
            f"this recipe's {len(r.seeds)}-seed range on {where} is {r.low:.3f}-{r.high:.3f}, "
            f"mean {r.mean:.3f} (sd {r.sd:.3f})"
        )
    others = [f"{r.cpu} {r.low:.3f}-{r.high:.3f}" for r in ranges if r is not mine]
    if others:
        parts.append(("other CPUs: " if mine else "measured on other CPUs only: ") + "; ".join(others))
    console.print(f"expected: test accuracy {accuracy:.4f}; " + "; ".join(parts))
    if mine and not mine.low - 0.02 <= accuracy <= mine.high + 0.02:
        console.print(
            f"warning: {accuracy:.4f} is outside that range by more than 0.02: check the install "
            "(the package versions in the run folder's hparams.json) before trusting this run"
        )


def print_evaluation(console: Console, result: EvaluationResult, report_path: Path) -> None:
    """The evaluation's figures per split, its threshold and temperature, and errors by attribute."""
    keys = tuple(k for k, _ in SCALARS if k not in ("weighted_f1", "mce"))
    console.print(metrics_table("defectlens evaluation", result.metrics, keys))
    thr = result.threshold
    if thr is not None:
        console.print(f"threshold {thr.threshold:.4f} ({thr.method}): {thr.reason}")
    console.print(f"temperature {result.temperature:.4f}")
    for note in result.notes:
        console.print(f"note: {note}")
    main = "test" if "test" in result.splits else result.splits[-1]
    for key, rows in (result.slices or {}).get(main, {}).items():
        text = "; ".join(f"{r['value']} {r['errors']}/{r['n']}" for r in rows)
        console.print(f"{main} errors by {key}: {text}")
    print_gate(console, result.gate)
    console.print("report:")
    console.print(str(report_path), overflow="ignore", crop=False)


def print_gate(console: Console, gate: dict[str, Any]) -> None:
    """Per split, the gate's coverage, what it flagged and why, and the figures on the covered images."""
    if not gate:
        return
    if not gate.get("active"):
        console.print(f"gate: off{': ' + gate['note'] if gate.get('note') else ' (--gate off)'}")
        return
    if gate.get("note"):
        console.print(f"gate: {gate['note']}")
    for split, g in gate.get("splits", {}).items():
        why = ", ".join(f"{k} {v}" for k, v in g["reasons"].items())
        recall = g.get("defect_recall_covered")
        console.print(
            f"gate ({gate['mode']}) on {split}: coverage {fmt(g['coverage'])} ({g['covered']} of {g['images']} "
            f"images), flagged {g['flagged']}{f' ({why})' if why else ''}; on the covered images: accuracy "
            f"{fmt(g['accuracy_covered'])}" + (f", defect recall {fmt(recall)}" if "defect_recall_covered" in g else "")
        )


def _top(counter: dict[str, int], n: int = 4) -> str:
    items = list(counter.items())
    text = ", ".join(f"{k} ({v})" for k, v in items[:n])
    return text + (f", +{len(items) - n} more" if len(items) > n else "")


def print_stats(console: Console, stats: dict[str, Any]) -> None:
    """Counts per class and split, sizes, modes, duplicates, leakage, warnings and skipped files."""
    splits = list(stats["per_split"])
    rows = [
        [
            c + (" (positive)" if c == stats["positive_class"] else ""),
            *(str(stats["per_split"][s].get(c, 0)) for s in splits),
            str(stats["per_class"][c]),
        ]
        for c in stats["classes"]
    ]
    console.print(
        table(f"{stats['name']} ({stats['format']}): {stats['images']} images", ["class", *splits, "total"], rows)
    )
    console.print(f"sizes: {_top(stats['sizes'])}   modes: {_top(stats['modes'])}")
    cross = stats["cross_split_groups"]
    console.print(
        f"exact duplicate sets: {stats['exact_duplicate_sets']}   duplicate groups: {stats['duplicate_groups']}"
        + (f"   groups across splits: {cross}" if cross is not None else "")
    )
    for w in stats["warnings"]:
        console.print(f"warning: {w}")
    if stats["skipped"]:
        console.print(f"{len(stats['skipped'])} file(s) skipped:")
        for s in stats["skipped"]:
            console.print(f"  {safe(s['path'])}: {safe(s['reason'])}")


def print_shifts(console: Console, result: dict[str, Any], path: Path) -> None:
    """Per shift kind, the worst accuracy (and its change from clean) at each strength."""
    rows = []
    for kind, by_strength in result["worst_by_kind"].items():
        cells = [
            f"{r['accuracy']:.4f} ({r['accuracy_change']:+.3f})" if (r := by_strength.get(s)) else "-"
            for s in ("mild", "moderate", "strong")
        ]
        rows.append([kind, *cells])
    title = f"{result['split']} under shifts (clean accuracy {result['clean']['accuracy']:.4f}; worst direction)"
    console.print(table(title, ["shift", "mild", "moderate", "strong"], rows))
    console.print("robustness:")
    console.print(str(path), overflow="ignore", crop=False)
