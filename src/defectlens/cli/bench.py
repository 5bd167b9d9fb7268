"""``defectlens bench``: latency and throughput of a bundle, ONNX Runtime vs eager torch."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmark a model bundle on this CPU", description=__doc__)
    p.add_argument("--model", required=True, help="model bundle (.dlens)")
    p.add_argument("--images", type=Path, default=None, help="folder of images (default: synthetic JPEGs)")
    p.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes")
    p.add_argument("--threads", type=int, default=None, help="intra-op CPU threads")
    p.add_argument("--repeats", type=int, default=300, help="timed single-image predictions")
    p.add_argument("--no-torch", action="store_true", help="skip the eager torch comparison")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from defectlens.core.errors import DefectlensError
    from defectlens.inference.bench import run_benchmark

    try:
        sizes = tuple(int(s) for s in args.batch_sizes.split(",") if s.strip())
    except ValueError:
        raise DefectlensError(f"--batch-sizes must be integers like 1,8,32, got {args.batch_sizes!r}") from None
    if not sizes or min(sizes) < 1:
        raise DefectlensError(f"--batch-sizes must be positive integers, got {args.batch_sizes!r}")
    result = run_benchmark(
        args.model,
        images=args.images,
        batch_sizes=sizes,
        threads=args.threads,
        repeats=args.repeats,
        compare_torch=not args.no_torch,
    )
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0
