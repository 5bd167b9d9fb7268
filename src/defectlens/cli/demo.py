"""``defectlens demo``: ELPV from the pip package, Deitsch split, default recipe, test metrics."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="train and evaluate the default recipe on ELPV solar cells (offline, ~15 min on 2 cores)"
    )
    p.add_argument("--data", default="data/elpv", help="where the imported ELPV dataset is written")
    p.add_argument("--out", default="runs", help="parent folder of the run folder")
    p.add_argument("--recipe", default="elpv", help="recipe name in configs/ or a YAML path")
    p.add_argument("--fresh", action="store_true", help="re-import and re-split even if --data exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.training.demo import run_demo
    from defectlens.training.report import print_summary

    result = run_demo(data=args.data, out=args.out, recipe=args.recipe, fresh=args.fresh)
    print_summary(result, title="defectlens demo (ELPV, Deitsch split)")
    return 0
