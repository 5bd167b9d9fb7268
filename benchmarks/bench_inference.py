"""Inference speed of the deployable path: MobileNetV3-Small at 224 on this CPU.

Builds a random-init MobileNetV3-Small checkpoint (speed does not depend on the weights), exports
it to a bundle (parity-checked), then measures with :func:`defectlens.inference.bench.run_benchmark`:
single-image end-to-end latency (file -> decision) on every installed backend vs eager torch, and
batch throughput. Uses real casting JPEGs from ../shared/datasets when present. Writes
benchmarks/results/inference.json.

    .venv/bin/python benchmarks/bench_inference.py [--threads N] [--repeats N]

Targets: p50 <= 4 ms end to end, >= 4x faster than eager torch, >= 400 img/s batched.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
CASTING = ROOT.parent / "shared" / "datasets" / "casting"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "inference.json")
    args = parser.parse_args()

    import torch

    from defectlens.core.checkpoint import save_checkpoint
    from defectlens.export import export_bundle
    from defectlens.inference.bench import run_benchmark
    from defectlens.models import create_model, default_spec

    torch.manual_seed(0)
    spec = default_spec("mobilenet_v3_small", class_names=("ok", "defect")).replace(
        positive_class="defect", threshold=0.5
    )
    model = create_model("mobilenet_v3_small", num_classes=2)
    images = CASTING if CASTING.is_dir() else None
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp) / "best.pt", model, spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random weights, synthetic parity inputs: expected here
            bundle = export_bundle(tmp, Path(tmp) / "model.dlens").path
        result = run_benchmark(
            bundle,
            images=images,
            batch_sizes=tuple(int(s) for s in args.batch_sizes.split(",")),
            threads=args.threads,
            repeats=args.repeats,
        )
    result["command"] = "python benchmarks/bench_inference.py " + (f"--threads {args.threads}" if args.threads else "")
    result["machine"] = {**result.get("machine", {}), **describe()}
    result["note"] = "random-init weights (speed only); load_average before/after tells whether the CPU was shared"
    on = next(r for r in result["rows"] if r["backend"] == "onnxruntime")
    result["targets"] = {
        "p50_end_to_end_ms<=4": on["end_to_end_ms"]["p50"] <= 4.0,
        "speedup_vs_torch>=4": result["speedup_vs_torch"]["onnxruntime"]["end_to_end_p50"] >= 4.0,
        "batch_throughput>=400": max(t["model_only_img_s"] for t in on["throughput"].values()) >= 400,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
