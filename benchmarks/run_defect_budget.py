"""How many labelled defects do you need? (issue #29) Casting: anomaly mode against our supervised recipe.

The supervised recipe (``recipes/casting.yaml``, exactly as ``benchmarks/run_real.py`` trains it) is trained
on the casting split that run_real prepares (seed 0, validation carved from the official training split,
official 715-image test split) with every good part of train and validation but only N defect images in
all: a seeded choice (nested: the 5 are among the 20, the 20 among the 100), about 80 % of them in train and
20 % (at least 1) in validation, where the threshold is fitted. "all" is the full training split. Each row
is evaluated on the untouched test split: accuracy, defect recall and false-alarm rate at the validated
threshold, image AUROC of the defect probability, recall at 1 % false alarms. The anomaly-mode row (0
defects) is read from ``benchmarks/results/anomaly-casting.json`` as it is.

    python benchmarks/run_defect_budget.py                      # 5, 20, 100, then all; skips rows done
    python benchmarks/run_defect_budget.py --budgets 5 20 100   # "all" from casting.json (marked so)
    python benchmarks/run_defect_budget.py --readme-only        # table + plot from the JSON
    python benchmarks/run_defect_budget.py --smoke --out /tmp/b # 16 images per class, 1 epoch

The JSON (``benchmarks/results/defect-budget.json``) is rewritten after every row, so an interrupted run
keeps its finished rows and a rerun skips them (``--force`` retrains). Each budget's dataset folder is a
manifest over the original images (no copies) in ``benchmarks/results/work/defect-budget/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import describe  # noqa: E402
from run_real import DATASETS, prepare, recipe, summarize, train  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
OUT_JSON = "defect-budget.json"
PLOT = ROOT / "docs" / "defect-budget.png"
NORMAL = "ok_front"
BUDGETS = ("5", "20", "100", "all")
VAL_SHARE = 0.2  # of the N defects, at least 1
MARKERS = ("<!-- defect-budget:start -->", "<!-- defect-budget:end -->")


def val_count(n: int) -> int:
    """How many of ``n`` labelled defects go to validation: about 20 %, at least 1, at least 1 left to train."""
    if n < 2:
        raise ValueError(f"a defect budget needs at least 2 images (1 to train, 1 to validate), got {n}")
    return min(n - 1, max(1, round(n * VAL_SHARE)))


def select_budget(manifest: Any, n: int, *, seed: int, normal: str = NORMAL) -> Any:
    """``manifest`` with every normal image of train and validation, ``n`` of its train + validation defect
    images (a seeded, nested choice: a larger budget contains a smaller one), ``val_count(n)`` of them in
    validation and the rest in train, and the test split untouched."""
    from dataclasses import replace

    pool = sorted(
        (r for r in manifest.records if r.split in ("train", "val") and r.label != normal), key=lambda r: r.path
    )
    if n > len(pool):
        raise ValueError(f"budget {n} is more than the {len(pool)} defect images of train and validation")
    random.Random(seed).shuffle(pool)
    chosen, k = pool[:n], val_count(n)
    split_of = {r.path: ("val" if i < k else "train") for i, r in enumerate(chosen)}
    records = [
        replace(r, split=split_of[r.path]) if r.path in split_of else r
        for r in manifest.records
        if r.split == "test" or r.label == normal or r.path in split_of
    ]
    return manifest.with_records(records, defect_budget={"defects": n, "val": k, "seed": seed})


def test_scores(run_dir: Path, positive: str) -> tuple[list[bool], list[float]]:
    """Truth (defective?) and defect probability of every test image, from the run's ``predictions.csv``."""
    with (run_dir / "eval" / "predictions.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    return [r["label"] == positive for r in rows], [float(r[f"p_{positive}"]) for r in rows]


PREDICTION_FIGURES = ("recall_at_1pct_false_alarms",)  # read from a run's predictions.csv, not its metrics


def figures(test: dict[str, Any], run_dir: Path | None) -> dict[str, Any]:
    """The row's figures from a run's test metrics (and its predictions, for recall at 1 % false alarms)."""
    import numpy as np

    from defectlens.evaluation.anomaly import recall_at_false_alarms

    at_1pct = None
    if run_dir is not None and (run_dir / "eval" / "predictions.csv").is_file():
        y, p = test_scores(run_dir, test["positive_class"])
        at_1pct = recall_at_false_alarms(np.asarray(y), np.asarray(p), 0.01)
        at_1pct = None if math.isnan(at_1pct) else at_1pct
    return {
        "accuracy": test["accuracy"],
        "defect_recall": test["defect_recall"],
        "false_alarm_rate": test["false_alarm_rate"],
        "image_auroc": test["roc_auc"],
        "recall_at_1pct_false_alarms": at_1pct,
        "tp": test.get("tp"),
        "fn": test.get("fn"),
        "fp": test.get("fp"),
        "tn": test.get("tn"),
        "n": test["n"],
    }


def unfinished_run(out: Path, name: str) -> Path | None:
    """The newest run folder of ``name`` under ``out`` that has a ``last.pt`` and no evaluation yet."""
    runs = sorted(out.glob(f"{name}-*/last.pt"), key=lambda p: p.stat().st_mtime)
    stopped = [p.parent for p in runs if not (p.parent / "eval" / "metrics.json").is_file()]
    return stopped[-1] if stopped else None


def train_row(budget: str, full: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train our recipe with ``budget`` labelled defects ("all": the full split) and return its row."""
    from defectlens.data.manifest import Manifest

    ds, work = DATASETS["casting"], Path(args.work)
    manifest = Manifest.read(full)
    if budget == "all":
        data = full
    else:
        data = select_budget(manifest, int(budget), seed=args.seed).write(work / f"n{budget}" / "data")
    used = Manifest.read(data).counts()
    config = recipe(ds, "ours", data=data, work=work / f"n{budget}", smoke=args.smoke, seed=args.seed)
    config = config.replace(name=f"budget-{budget}")
    print(f"== casting / ours with {budget} labelled defects: {used}", flush=True)
    load = os.getloadavg()
    stopped = unfinished_run(Path(config.out), config.name)
    if stopped is not None:  # a run stopped mid-way (killed, machine taken back) continues from its last epoch
        print(f"   continuing {stopped} from its last.pt", flush=True)
    run = train(config, quiet=args.quiet, resume=stopped)
    entry = summarize(run.metrics, run.run_dir)
    defects = {s: sum(v for k, v in c.items() if k != NORMAL) for s, c in used.items()}
    return {
        "budget": budget,
        "defects_used": defects["train"] + defects["val"],
        "defects": {s: defects[s] for s in ("train", "val")},
        "split": used,
        **figures(entry["test"], Path(run.run_dir)),
        "threshold": entry["threshold"],
        "train_seconds": round(run.seconds, 1),
        **({"train_seconds_note": "after resuming; the epochs before ran in an earlier process"} if stopped else {}),
        "best_epoch": run.best_epoch,
        "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": "this run's (see top-level machine)",
        "run_dir": str(run.run_dir),
        "config": config.to_dict(),
    }


def all_from_casting_json(results: Path, *, cpu: str | None = None, seed: int = 0) -> dict[str, Any] | None:
    """The "all" row from run_real's ``casting.json`` (our recipe on the full split), marked with its machine:
    the seed run (``run_real.py --seeds``) with this ``seed`` on this ``cpu`` model when there is one, else
    the results table's ``ours`` run, wherever it was measured."""
    path = results / "casting.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    ours = (res.get("approaches") or {}).get("ours")
    runs = (res.get("seeds") or {}).get("runs") or []
    mine = [r for r in runs if r["cpu"] == cpu and r["seed"] == seed and r.get("run_dir")]
    if not ours and not mine:
        return None
    split = res["split"]
    defects = {s: sum(v for k, v in split[s].items() if k != NORMAL) for s in ("train", "val")}
    if mine:
        run = mine[-1]  # a re-run seed replaces the earlier one
        machine = run["machine"]
        source = f"benchmarks/results/casting.json (run_real.py --seeds, seed {seed}), not trained by this script"
    else:
        run, machine = ours, res.get("machine") or {}
        source = "benchmarks/results/casting.json (run_real.py), not trained by this script"
    run_dir = Path(run["run_dir"])
    return {
        "budget": "all",
        "defects_used": defects["train"] + defects["val"],
        "defects": defects,
        "split": split,
        **figures(run["test"], run_dir if run_dir.is_dir() else None),
        "train_seconds": run.get("train_seconds"),
        "source": source,
        "machine": f"{machine.get('cpu')}, {machine.get('cores')} cores, defectlens "
        f"{(machine.get('versions') or {}).get('defectlens')}",
        "run_dir": str(run_dir),
    }


def anomaly_row(results: Path) -> dict[str, Any] | None:
    """The 0-defect row: anomaly mode on casting as ``anomaly-casting.json`` recorded it."""
    path = results / "anomaly-casting.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    image, n = res["image"], res["counts"]["test"]
    return {
        "budget": "0 (anomaly mode)",
        "defects_used": 0,
        "accuracy": res["evaluation"]["test"]["accuracy"],
        "defect_recall": image["recall_at_threshold"],
        "false_alarm_rate": image["false_alarm_rate_at_threshold"],
        "image_auroc": image["image_auroc"],
        "recall_at_1pct_false_alarms": image["recall_at_1pct_false_alarms"],
        "n": sum(n.values()),
        "train_seconds": res.get("train_and_evaluate_seconds"),
        "train_seconds_note": "fit + evaluate",
        "source": "benchmarks/results/anomaly-casting.json (run_anomaly.py)",
        "machine": (res.get("machine") or {}).get("cpu"),
        "method": res.get("method"),
    }


def _pct(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def table(result: dict[str, Any]) -> str:
    """The README table: one line per row, anomaly mode first, then the budgets in order."""
    lines = [
        "| labelled defects (train + val) | method | test accuracy | defect recall | false alarms (good parts "
        "flagged) | image AUROC | recall at 1 % false alarms | train time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = ordered_rows(result)
    for r in rows:
        method = "anomaly mode (PatchCore, good parts only)" if r["defects_used"] == 0 else "supervised recipe"
        if r["defects_used"] == 0 and r.get("machine"):
            method += f" (measured on {r['machine']})"
        if r.get("source", "").startswith("benchmarks/results/casting.json"):
            method += f" (casting.json, measured on {r['machine']})"
        label = (
            "0"
            if r["defects_used"] == 0
            else f"{r['defects_used']:,}"
            + (f" ({r['defects']['train']:,} + {r['defects']['val']:,})" if r.get("defects") else "")
        )
        minutes = "–" if r.get("train_seconds") is None else f"{r['train_seconds'] / 60:.1f} min"
        if r.get("train_seconds_note"):
            minutes += f" ({r['train_seconds_note']})"
        lines.append(
            f"| {label} | {method} | {_pct(r['accuracy'])} | {_pct(r['defect_recall'])} "
            f"| {_pct(r['false_alarm_rate'])} | {_pct(r['image_auroc'])} | {_pct(r['recall_at_1pct_false_alarms'])} "
            f"| {minutes} |"
        )
    return "\n".join(lines)


def ordered_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = result.get("rows") or {}
    keys = ["anomaly", *[b for b in BUDGETS if b in rows]]
    return [rows[k] for k in keys if k in rows]


def plot(result: dict[str, Any], path: Path) -> Path:
    """Defect recall at the validated threshold and image AUROC against the labelled defects (0 = anomaly mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ordered_rows(result)
    x = [r["defects_used"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=120)
    ax.plot(x, [r["defect_recall"] for r in rows], "o-", label="defect recall (validated threshold)")
    ax.plot(x, [r["image_auroc"] for r in rows], "s--", label="image AUROC")
    at1 = [(r["defects_used"], r["recall_at_1pct_false_alarms"]) for r in rows]
    at1 = [(a, b) for a, b in at1 if b is not None]
    ax.plot([a for a, _ in at1], [b for _, b in at1], "^:", label="recall at 1 % false alarms")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(x)
    ax.set_xticklabels(["0\nanomaly" if v == 0 else f"{v:,}" for v in x])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    for r in rows:
        if r.get("source", "").startswith("benchmarks/results/casting.json"):
            ax.annotate(
                f"casting.json\n({r['machine'].split(',')[0]})",
                (r["defects_used"], r["image_auroc"]),
                xytext=(-8, -28),
                textcoords="offset points",
                ha="right",
                fontsize=7,
            )
    ax.set_xlabel("labelled defect images (train + validation)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("Casting, official test split (453 defective, 262 good)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def update_readme(
    result: dict[str, Any], readme: Path = ROOT / "README.md", image: str = "docs/defect-budget.png"
) -> bool:
    """Write the table and the plot's link between the defect-budget markers; False when they are missing."""
    start, end = MARKERS
    text = readme.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    body = f"{table(result)}\n\n![Defect recall and AUROC against labelled defects]({image})"
    readme.write_text(f"{head}{start}\n{body}\n{end}{tail}")
    return True


def load_result(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The results so far (rows kept unless ``--force`` names them again), with this run's command added."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    if old.get("smoke") != args.smoke or old.get("seed", args.seed) != args.seed:
        old = {}
    command = " ".join([Path(sys.executable).name, *sys.argv])
    return {
        "dataset": "casting",
        "question": "test figures of our recipe with N labelled defects vs anomaly mode (0 defects)",
        "selection": "all good images of train and val kept; N defects of train+val, seeded nested choice, "
        f"round({VAL_SHARE} N) (>= 1) in val, the rest in train; test split untouched",
        "seed": args.seed,
        "smoke": args.smoke,
        "commands": [*old.get("commands", []), command],
        "machine": describe(),
        "rows": dict(old.get("rows") or {}),
    }


def save(result: dict[str, Any], path: Path, trained: set[str]) -> None:
    """Write the JSON; a budget row another run (e.g. one started with other ``--budgets`` beside this one)
    wrote there since this run read it is kept unless this run trained that budget itself."""
    on_disk = json.loads(path.read_text()).get("rows", {}) if path.is_file() else {}
    for key, row in on_disk.items():
        if key in BUDGETS and key not in trained and not row.get("source"):
            result["rows"][key] = row
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def reference_rows(result: dict[str, Any], results: Path) -> None:
    """Add the rows this script does not train: anomaly mode (0 defects) and, unless trained here, "all" from
    casting.json (re-read every time, marked with the machine it was measured on)."""
    anomaly = anomaly_row(results)
    if anomaly:
        result["rows"]["anomaly"] = anomaly
    trained = result["rows"].get("all")
    if trained is None or trained.get("source"):
        fallback = all_from_casting_json(results, cpu=result["machine"]["cpu"], seed=result["seed"])
        if fallback:
            if trained and trained.get("run_dir") == fallback["run_dir"]:  # the same run, read before
                for key in PREDICTION_FIGURES:  # from its predictions, whose folder this clone may not have
                    if fallback.get(key) is None:
                        fallback[key] = trained.get(key)
            result["rows"]["all"] = fallback


def main(args: argparse.Namespace) -> int:
    path = Path(args.out) / OUT_JSON
    if args.readme_only:
        result = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
        reference_rows(result, RESULTS)
        if path.is_file():  # the reference rows as their sources hold them now; the trained rows as they were
            path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    else:
        result = load_result(path, args)
        full = prepare(
            DATASETS["casting"], shared=Path(args.shared), work=Path(args.work), smoke=args.smoke, seed=args.seed
        )
        if not args.smoke:
            reference_rows(result, RESULTS)
        trained: set[str] = set()
        for budget in args.budgets:
            done = result["rows"].get(budget)
            if done and not args.force and not done.get("source"):
                print(f"skip {budget}: in {path} (--force retrains)")
                continue
            result["rows"][budget] = train_row(budget, full, args)
            trained.add(budget)
            save(result, path, trained)
        save(result, path, trained)
    if not args.smoke and not args.no_readme:
        plot(result, PLOT)
        if not update_readme(result):
            print(f"README has no {MARKERS[0]} ... {MARKERS[1]} markers; table not written")
    print(table(result))
    return 0


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS), help="smallest first")
    p.add_argument("--shared", default=str(ROOT.parent / "shared" / "datasets"), help="real datasets folder")
    p.add_argument("--work", default=str(RESULTS / "work" / "defect-budget"), help="dataset folders and runs")
    p.add_argument("--out", default=str(RESULTS), help=f"where {OUT_JSON} goes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="16 images per class, 1 epoch, 64 px: a pipeline check")
    p.add_argument("--force", action="store_true", help="retrain rows already in the JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-readme", action="store_true", help="no README table or plot")
    p.add_argument("--readme-only", action="store_true", help="only the README table and plot, from the JSON")
    return p


if __name__ == "__main__":
    raise SystemExit(main(get_args_parser().parse_args()))
