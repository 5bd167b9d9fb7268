"""``defectlens bench``: latency and throughput of a bundle on every installed backend, against eager torch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from defectlens.core.machine import machine_label
from defectlens.inference.predictor import BACKENDS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmark a model bundle on this CPU", description=__doc__)
    p.add_argument("--model", required=True, help="model bundle (.dlens)")
    p.add_argument(
        "--images",
        type=Path,
        default=None,
        help="folder of real images, class subfolders for accuracy (default: synthetic JPEGs at the input size)",
    )
    p.add_argument("--max-images", type=int, default=200, help="most images of --images used (default: 200)")
    p.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes (default: 1,8,32)")
    p.add_argument("--threads", type=int, default=None, help="CPU cores a batch is spread over (default: all)")
    p.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS[1:],
        default=None,
        help="backend to measure; repeat for several (default: every installed one, and torch)",
    )
    p.add_argument("--repeats", type=int, default=100, help="timed single-image predictions (default: 100)")
    p.add_argument("--seconds", type=float, default=1.0, help="seconds per batch size and backend (default: 1)")
    p.add_argument("--no-torch", action="store_true", help="skip the eager torch reference")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli.output import json_text, progress_display, stdout
    from defectlens.core.errors import DefectlensError
    from defectlens.inference.bench import run_benchmark

    try:
        sizes = tuple(int(s) for s in args.batch_sizes.split(",") if s.strip())
    except ValueError:
        raise DefectlensError(f"--batch-sizes must be integers like 1,8,32, got {args.batch_sizes!r}") from None
    if not sizes or min(sizes) < 1:
        raise DefectlensError(f"--batch-sizes must be positive integers, got {args.batch_sizes!r}")
    with progress_display() as progress:
        result = run_benchmark(
            args.model,
            images=args.images,
            batch_sizes=sizes,
            threads=args.threads,
            repeats=args.repeats,
            seconds=args.seconds,
            backends=tuple(args.backend) if args.backend else None,
            compare_torch=not args.no_torch,
            max_images=args.max_images,
            progress=progress,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json_text(result) + "\n", encoding="utf-8")
    for block in render(result):
        stdout().print(block)
    return 0


def render(result: dict[str, Any]) -> list[Any]:
    """The benchmark as console blocks: a latency table, a throughput table and notes."""
    from defectlens.cli.output import fmt, table

    rows, sizes = result["rows"], [str(b) for b in result["batch_sizes"]]
    speed = result.get("speedup_vs_torch", {})
    latency = [
        [
            r["backend"],
            *(fmt(r["end_to_end_ms"][q], 2) for q in ("p50", "p95", "p99")),
            fmt(r["model_only_ms"]["p50"], 2),
            f"{speed[r['backend']]['end_to_end_p50']:.1f}x" if r["backend"] in speed else "-",
            fmt(r["accuracy"], 3),
        ]
        for r in rows
    ]
    columns = ["backend", "p50", "p95", "p99", "model p50", "vs torch", "accuracy"]
    blocks: list[Any] = [table("One image, end to end (ms): file -> decision", columns, latency)]
    through = [
        [r["backend"], *(f"{r['throughput'][b]['model_only_img_s']:.0f}" for b in sizes)]
        + [f"{r['throughput'][b]['end_to_end_img_s']:.0f}" for b in sizes]
        for r in rows
    ]
    heads = [f"b{b}" for b in sizes] + [f"e2e b{b}" for b in sizes]
    blocks.append(table("Images per second: model only, then end to end", ["backend", *heads], through))
    blocks.append(_notes(result))
    return blocks


def _notes(result: dict[str, Any]) -> str:
    load = result["load_average"]
    busy = max(load["before"][0], load["after"][0]) > 0.5
    lines = [
        f"{result['arch']} {result['input_size']} px on {machine_label(result['machine'])}, "
        f"{result['threads']} core(s) per batch; {result['images']}",
        f"load average {load['before'][0]:.2f} before, {load['after'][0]:.2f} after"
        + (" (other processes were using the CPU: figures are slower than on an idle machine)" if busy else ""),
    ]
    if result.get("labelled_images"):
        lines.append(f"accuracy: decisions at the stored threshold on {result['labelled_images']} labelled images")
    q = result.get("int8_validation")
    if q and q.get("accuracy_fp32") is not None:
        state = "the bundle's default graph" if q["accepted"] else "opt-in (--precision int8)"
        lines.append(
            f"INT8 on validation at export: accuracy {q['accuracy_fp32']:.4f} FP32 vs {q['accuracy_int8']:.4f} INT8, "
            f"{q['newly_wrong']} newly wrong of {q['images']}: {state}"
        )
    return "\n".join(lines)
