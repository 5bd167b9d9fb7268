"""``defectlens bundle``: wrap a classifier trained elsewhere (ONNX, or TorchScript through torch) into a
``.dlens`` bundle, so predict, evaluate, serve, line and the Inspector run it.

The model takes a normalised float batch (N, C, H, W) and returns logits; ``--mean``/``--std`` are
its normalisation of [0, 1] pixels. ``--calibrate`` fits the temperature and threshold on a folder
whose subfolders are named after the classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated numbers, e.g. 0.485,0.456,0.406") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bundle", help="wrap a model trained elsewhere into a bundle", description=__doc__)
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--onnx", type=Path, metavar="FILE", help="ONNX classifier (logits out)")
    model.add_argument(
        "--torchscript", type=Path, metavar="FILE", help="TorchScript classifier, converted through torch ([train])"
    )
    p.add_argument(
        "--classes", required=True, metavar="A,B,...", help="class names in the model's output order, comma-separated"
    )
    p.add_argument("--input-size", type=int, required=True, metavar="N", help="side of the square input in pixels")
    p.add_argument("--channels", type=int, choices=(1, 3), default=3, help="1 (gray) or 3 (RGB)")
    p.add_argument(
        "--mean",
        type=_floats,
        default=None,
        metavar="M,...",
        help="per-channel mean of [0, 1] pixels (default: ImageNet's)",
    )
    p.add_argument(
        "--std",
        type=_floats,
        default=None,
        metavar="S,...",
        help="per-channel std of [0, 1] pixels (default: ImageNet's)",
    )
    p.add_argument(
        "--positive-class", default=None, metavar="NAME", help="the defect class a threshold applies to (binary)"
    )
    p.add_argument(
        "--calibrate", type=Path, default=None, metavar="DIR", help="labelled folder (class subfolders) to fit on"
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="bundle file to write (.dlens)")
    p.add_argument("--force", action="store_true", help="replace the bundle if --out exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli.output import stdout
    from defectlens.core.outputs import check_output
    from defectlens.workflows.wrap import wrap_model, wrapped_spec

    check_output(args.out, force=args.force, what="--out")
    spec = wrapped_spec(
        classes=args.classes, input_size=args.input_size, channels=args.channels,
        mean=args.mean, std=args.std, positive_class=args.positive_class,
    )  # fmt: skip
    source = args.onnx or args.torchscript
    result = wrap_model(
        source,
        args.out,
        spec=spec,
        torchscript=args.torchscript is not None,
        calibrate=args.calibrate,
        force=args.force,
    )
    console = stdout()
    console.print(f"wrote {result.path} (model_id {result.model_id[:16]})")
    final = result.meta["spec"]
    console.print(
        f"checked: {source.name} takes [N, {final['in_channels']}, {final['input_size']}, {final['input_size']}] "
        f"and gives {len(final['class_names'])} classes ({', '.join(final['class_names'])})"
    )
    calibration = result.meta.get("calibration")
    if calibration:
        line = f"calibrated on {calibration['images']} images: temperature {final['temperature']:.3f}"
        if final.get("threshold") is not None:
            line += f", threshold {final['threshold']:.4f} on P({final['positive_class']})"
        console.print(line + f", accuracy {calibration['metrics']['accuracy']:.4f}")
    else:
        console.print("not calibrated: temperature 1, most probable class (pass --calibrate FOLDER to fit them)")
    return 0
