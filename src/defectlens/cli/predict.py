"""``defectlens predict``: classify an image, a folder or a glob with a bundle or checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from defectlens.inference.predictor import BACKENDS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="classify images with a model bundle", description=__doc__)
    p.add_argument(
        "target", metavar="IMAGE|DIR|GLOB", help="one image, a folder (class subfolders add ground truth) or a glob"
    )
    p.add_argument("--model", required=True, help="model bundle (.dlens), run folder or checkpoint")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold on the defect probability")
    p.add_argument("--explain", action="store_true", help="write a Grad-CAM overlay PNG per image")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: ./predictions for folders)")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for inference")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli.output import progress_display
    from defectlens.core.errors import DefectlensError
    from defectlens.inference.predictor import Predictor
    from defectlens.workflows.predict import collect_inputs, predict_files

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise DefectlensError(f"--threshold must be in [0, 1], got {args.threshold}")
    predictor = Predictor.load(args.model, backend=args.backend, threads=args.threads)
    inputs = collect_inputs(args.target, predictor.spec.class_names)
    if inputs.kind == "file":
        pred = next(predictor.predict_many([str(inputs.files[0])], threshold=args.threshold))
        result = pred.to_dict()
        if args.explain and pred.ok:
            from defectlens.explain.gradcam import save_overlay

            target = (args.out or Path()) / f"{inputs.files[0].stem}_gradcam.png"
            result["overlay"] = str(save_overlay(predictor, inputs.files[0], target, target=pred.prediction))
        print(json.dumps(result, indent=2))
        return 0 if pred.ok else 1
    out = args.out or Path("predictions")
    with progress_display() as progress:
        summary = predict_files(
            predictor,
            inputs,
            out=out,
            threshold=args.threshold,
            explain=args.explain,
            batch_size=args.batch_size,
            progress=progress,
        )
    _print(summary, predictor.spec.class_names)
    return 1 if summary.errors else 0


def _print(summary, class_names) -> None:
    from defectlens.cli.output import fmt, stdout, table

    console = stdout()
    rows = [[key, str(summary.counts[key])] for key in [*class_names, "ERROR"] if summary.counts.get(key)]
    console.print(table(f"{summary.files} files", ["result", "count"], rows))
    console.print("predictions:")
    console.print(str(summary.csv_path), overflow="ignore", crop=False)
    m = summary.metrics
    if m:
        recall = ", ".join(f"{r['class']} {r['recall']:.3f}" for r in m["per_class"] if r["support"])
        console.print(f"accuracy {fmt(m['accuracy'])} on {m['n']} labelled images; recall: {recall}")
        console.print(f"MISMATCH rows: {summary.mismatches}")
    for r in summary.errors:
        console.print(f"error {r['file']}: {r['reason']}")
