"""``defectlens predict``: classify an image, a folder or a glob with a bundle or checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="classify images with a model bundle", description=__doc__)
    p.add_argument(
        "target", metavar="IMAGE|DIR|GLOB", help="one image, a folder (class subfolders add ground truth) or a glob"
    )
    p.add_argument("--model", required=True, help="model bundle (.dlens), run folder or checkpoint")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold on the defect probability")
    p.add_argument("--explain", action="store_true", help="write a Grad-CAM overlay PNG per image")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: ./predictions for folders)")
    p.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for inference")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.errors import DefectlensError
    from defectlens.inference.batch import collect_inputs, predict_files
    from defectlens.inference.predictor import Predictor

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
    rows, metrics = predict_files(
        predictor,
        inputs,
        out=out,
        threshold=args.threshold,
        explain=args.explain,
        batch_size=args.batch_size,
        progress=_progress,
    )
    _summary(rows, metrics, out, predictor.spec.class_names)
    return 1 if any(r["status"] != "ok" for r in rows) else 0


def _progress(results, total):
    from rich.progress import track

    return track(results, total=total, description="predicting", transient=True, console=_console())


def _console():
    from rich.console import Console

    return Console(stderr=not sys.stdout.isatty())


def _summary(rows, metrics, out, class_names) -> None:
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{len(rows)} files -> {out / 'predictions.csv'}")
    table.add_column("result")
    table.add_column("count", justify="right")
    counts = Counter(r["prediction"] if r["status"] == "ok" else "ERROR" for r in rows)
    for key in [*class_names, "ERROR"]:
        if counts.get(key):
            table.add_row(key, str(counts[key]))
    console.print(table)
    if metrics:
        recall = ", ".join(f"{c} {v:.3f}" for c, v in metrics["recall"].items())
        console.print(f"accuracy {metrics['accuracy']:.4f} on {metrics['images']} labelled images; recall: {recall}")
        mismatches = sum(r["match"] == "MISMATCH" for r in rows)
        console.print(f"MISMATCH rows: {mismatches}")
    for r in rows:
        if r["status"] != "ok":
            console.print(f"[red]error[/red] {r['file']}: {r['reason']}", markup=True, highlight=False)
