"""``defectlens evaluate``: score a run folder, checkpoint or bundle on a dataset and write a report."""

from __future__ import annotations

import argparse

from defectlens.core.profile import GATE_MODES
from defectlens.data.manifest import SPLITS
from defectlens.data.shifts import KINDS
from defectlens.evaluation.threshold import METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="metrics, calibration, operating threshold and an HTML report",
        description="Evaluate a trained model on a dataset's splits. Temperature and threshold are fitted on "
        "val only with --refit; otherwise the values stored with the model are used as deployed.",
    )
    p.add_argument("model", metavar="RUN_OR_MODEL", help="run folder, .pt checkpoint or .dlens bundle")
    p.add_argument("--data", metavar="DIR", help="dataset folder (default: the one the model was trained on)")
    p.add_argument("--split", action="append", choices=SPLITS, help="split(s) to report (repeatable)")
    p.add_argument("--threshold-method", choices=METHODS, default="f1")
    p.add_argument("--target-recall", type=float, default=0.99, help="defect recall for --threshold-method recall")
    p.add_argument("--cost-fn", type=float, default=10.0, help="cost of a missed defect (per part)")
    p.add_argument("--cost-fp", type=float, default=1.0, help="cost of a false alarm (per part)")
    p.add_argument("--refit", action="store_true", help="refit temperature and threshold on the val split")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false", help="with --refit, keep the temperature")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN/eval, or eval-2, eval-3... if taken)")
    p.add_argument("--force", action="store_true", help="replace an evaluation already in --out")
    p.add_argument(
        "--gate",
        choices=GATE_MODES,
        default="refuse",
        help="the bundle's gate: refuse or warn (default refuse) report its coverage and the accuracy on the images "
        "it lets through beside the figures on all images; off evaluates without it",
    )
    p.add_argument(
        "--shifts",
        nargs="*",
        choices=KINDS,
        metavar="KIND",
        help=f"also score the test split under lighting and camera shifts ({', '.join(KINDS)}; none named: all) "
        "at mild, moderate and strong strength; writes robustness.json",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli.output import progress_display, stdout
    from defectlens.cli.summary import print_evaluation
    from defectlens.evaluation.evaluate import EvalSettings
    from defectlens.workflows.evaluate import evaluate_run

    settings = EvalSettings(
        threshold_method=args.threshold_method,
        target_recall=args.target_recall,
        cost_fn=args.cost_fn,
        cost_fp=args.cost_fp,
        calibrate=args.calibrate,
        refit=args.refit,
    )
    with progress_display() as progress:
        run = evaluate_run(
            args.model,
            data=args.data,
            out_dir=args.out,
            splits=tuple(args.split or SPLITS),
            settings=settings,
            force=args.force,
            progress=progress,
            gate=args.gate,
        )
    print_evaluation(stdout(), run.result, run.report_path)
    if args.shifts is not None:
        _shifts(args, run.out_dir)
    return 0


def _shifts(args: argparse.Namespace, out_dir) -> None:
    from defectlens.cli.output import progress_display, stdout
    from defectlens.cli.summary import print_shifts
    from defectlens.data.manifest import Manifest
    from defectlens.data.shifts import KINDS, family
    from defectlens.inference.predictor import Predictor
    from defectlens.workflows.evaluate import recorded_dataset
    from defectlens.workflows.robustness import evaluate_shifts, write_shift_report

    predictor = Predictor.load(args.model)
    manifest = Manifest.read(args.data or recorded_dataset(args.model, predictor))
    with progress_display() as progress:
        result = evaluate_shifts(predictor, manifest, shifts=family(tuple(args.shifts or KINDS)), progress=progress)
    print_shifts(stdout(), result, write_shift_report(result, out_dir))
