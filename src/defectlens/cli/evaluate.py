"""``defectlens evaluate``: score a run folder, checkpoint or bundle on a dataset and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="metrics, calibration, operating threshold and an HTML report",
        description="Evaluate a trained model on a dataset's splits. Temperature and threshold are fitted on "
        "val only with --refit; otherwise the values stored with the model are used as deployed.",
    )
    p.add_argument("model", metavar="RUN_OR_MODEL", help="run folder, .pt checkpoint or .dlens bundle")
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder (manifest.csv + dataset.json)")
    p.add_argument("--split", action="append", choices=("train", "val", "test"), help="split(s) to report (repeatable)")
    p.add_argument("--threshold-method", choices=("f1", "recall", "cost"), default="f1")
    p.add_argument("--target-recall", type=float, default=0.99, help="defect recall for --threshold-method recall")
    p.add_argument("--cost-fn", type=float, default=10.0, help="cost of a missed defect (per part)")
    p.add_argument("--cost-fp", type=float, default=1.0, help="cost of a false alarm (per part)")
    p.add_argument("--refit", action="store_true", help="refit temperature and threshold on the val split")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false", help="with --refit, keep the temperature")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN/eval or MODEL-eval)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from defectlens.data.manifest import Manifest
    from defectlens.evaluation.runner import run_evaluation
    from defectlens.inference.predictor import Predictor

    source = Path(args.model)
    manifest = Manifest.read(args.data)
    predictor = Predictor.load(source)
    run_info: dict = {"model_path": str(source.resolve()), "data": str(Path(args.data).resolve())}
    if source.is_dir():
        run_info["run_dir"] = str(source.resolve())
        if (source / "config.yaml").is_file():
            run_info["config"] = yaml.safe_load((source / "config.yaml").read_text(encoding="utf-8"))
    out = (
        Path(args.out)
        if args.out
        else (source / "eval" if source.is_dir() else source.with_name(f"{source.stem}-eval"))
    )
    result = run_evaluation(
        predictor,
        manifest,
        out_dir=out,
        splits=tuple(args.split or ("train", "val", "test")),
        threshold_method=args.threshold_method,
        target_recall=args.target_recall,
        cost_fn=args.cost_fn,
        cost_fp=args.cost_fp,
        calibrate=args.calibrate,
        refit=args.refit,
        run_info=run_info,
    )
    print(f"report: {result.report_path}")
    return 0
