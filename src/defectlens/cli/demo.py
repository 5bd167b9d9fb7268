"""``defectlens demo``: ELPV from the pip package, Deitsch split, default recipe, test metrics."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train and evaluate the default recipe on ELPV solar cells (offline; 5-11 min on 2 CPU cores)",
    )
    p.add_argument("--data", default="data/elpv", help="where the imported ELPV dataset is written")
    p.add_argument("--out", default="runs", help="parent folder of the run folder")
    p.add_argument("--recipe", default="elpv", help="recipe name or YAML path")
    p.add_argument("--fresh", action="store_true", help="re-import and re-split even if --data exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli.output import progress_display, stdout
    from defectlens.cli.summary import print_expected, print_run
    from defectlens.core.machine import cpu_model
    from defectlens.workflows.demo import run_demo
    from defectlens.workflows.recipes import expected_ranges

    with progress_display() as progress:
        result = run_demo(data=args.data, out=args.out, recipe=args.recipe, fresh=args.fresh, progress=progress)
    print_run(stdout(), result, title="defectlens demo (ELPV, Deitsch split)")
    print_expected(stdout(), result.metrics.get("test", {}), expected_ranges(args.recipe), cpu_model())
    return 0
