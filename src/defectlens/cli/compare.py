"""``defectlens compare``: a champion and a challenger on the same labelled split; promote or keep the champion."""

from __future__ import annotations

import argparse
from typing import Any

from defectlens.core.profile import GATE_MODES
from defectlens.data.manifest import SPLITS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="champion vs challenger: paired test, disagreements and a promotion verdict",
        description="Score one split with both models as deployed, compare their decisions image by image (exact "
        "McNemar test) and say whether to promote the challenger: only if its defect recall on the images both "
        "decided is not lower than the champion's and the paired test does not show it worse (p < 0.05 with more "
        "errors). Exit 0: promote; 5: keep the champion; 2: bad input.",
    )
    p.add_argument("champion", metavar="CHAMPION", help="the model in service: .dlens bundle (or run folder, .pt)")
    p.add_argument("challenger", metavar="CHALLENGER", help="the candidate: .dlens bundle (or run folder, .pt)")
    p.add_argument("--data", metavar="DIR", required=True, help="labelled dataset folder (defectlens data import)")
    p.add_argument("--split", choices=SPLITS, default="test", help="the split both models are scored on")
    p.add_argument(
        "--out", metavar="DIR", help="output folder (default: compare-CHAMPION-vs-CHALLENGER beside the challenger)"
    )
    p.add_argument("--force", action="store_true", help="replace a comparison already in --out")
    p.add_argument("--cost-fn", type=float, help="cost of a missed defect (default: the champion's training, else 10)")
    p.add_argument("--cost-fp", type=float, help="cost of a false alarm (default: the champion's training, else 1)")
    p.add_argument("--gate", choices=GATE_MODES, default="refuse", help="each model's gate; refused frames need review")
    p.add_argument(
        "--overlays", type=int, metavar="N",
        help="disagreeing images drawn with both models' overlays in the report (default: the report's limit, "
        "which it states when it has more; 0: none)",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli import EXIT_KEEP_CHAMPION, EXIT_OK
    from defectlens.cli.output import progress_display, stdout
    from defectlens.workflows.compare import compare_models

    with progress_display() as progress:
        result = compare_models(
            args.champion, args.challenger, data=args.data, split=args.split, out_dir=args.out, force=args.force,
            cost_fn=args.cost_fn, cost_fp=args.cost_fp, gate=args.gate, progress=progress,
            **({} if args.overlays is None else {"overlays": args.overlays}),
        )  # fmt: skip
    out = stdout()
    for line in [*summary_lines(result.payload), f"report: {result.report_path}", f"disagreements: {result.csv_path}"]:
        out.print(line)
    return EXIT_OK if result.promoted else EXIT_KEEP_CHAMPION


def _fig(f: dict[str, Any] | None) -> str:
    if not f or f.get("value") is None:
        return "n/a"
    ci = f.get("ci")
    return f"{f['value']:.4f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def summary_lines(p: dict[str, Any]) -> list[str]:
    """The console summary: one line per model, the paired table, the verdict and its reasons."""
    lines = [f"{p['dataset']['split']} split of {p['dataset']['data']}: {p['images']} images"]
    for role, m in p["models"].items():
        f = m["figures"]
        lines.append(
            f"{role:<10} {m['source']}: accuracy {_fig(f['accuracy'])}  defect recall {_fig(f['defect_recall'])}  "
            f"false alarms {_fig(f['false_alarm_rate'])}  cost/part {_fig(f['expected_cost'])}  "
            f"needs review {m['needs_review']}"
        )
    t = p["paired"]
    lines.append(
        f"paired ({t['n']} images): both right {t['both_right']}, only champion right {t['champion_only']}, "
        f"only challenger right {t['challenger_only']}, both wrong {t['both_wrong']}; "
        f"exact McNemar p = {t['p_value']:.4g}"
    )
    v = p["verdict"]
    lines += [f"verdict: {v['decision'].upper()}", *(f"  - {r}" for r in v["reasons"]), f"rule: {v['rule']}"]
    return lines
