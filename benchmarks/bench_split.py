"""A lone image split over idle cores, and kept on one core when the machine is busy (issue #21).

The ONNX Runtime runner splits a single image over ``threads`` cores only when no other call of the
model is in flight and no other thread is running on the machine at that instant
(:func:`defectlens.inference.backends.others_running`). This measures, on one bundle, the Predictor's
single-image model latency (p50, p95) and CPU time per image at 1 thread and at every usable core,
first on an idle machine, then with a second process keeping one core busy, and, for comparison,
the split forced on regardless of the load (what the gate prevents). Writes
``benchmarks/results/split-<precision>.json``.

    .venv/bin/python benchmarks/bench_split.py BUNDLE [--precision auto|fp32|int8] [--repeats 300]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 600: pass"


def timed(predictor: Any, repeats: int) -> dict[str, float]:
    """p50/p95 latency and CPU time per image of ``predictor.logits`` on one image."""
    spec = predictor.spec
    x = np.random.default_rng(0).random((1, spec.in_channels, spec.input_size, spec.input_size), dtype=np.float32)
    for _ in range(20):
        predictor.logits(x)
    ms, cpu = [], time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.logits(x)
        ms.append((time.perf_counter() - start) * 1000.0)
    cpu_ms = (time.process_time() - cpu) * 1000.0 / repeats
    return {
        "p50_ms": round(float(np.median(ms)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "cpu_ms_per_image": round(cpu_ms, 2),
    }


def measure(bundle: Path, precision: str, repeats: int) -> dict[str, dict[str, float]]:
    from defectlens.inference import backends
    from defectlens.inference.predictor import Predictor

    cores = backends.usable_cores()
    rows = {
        "1 thread": timed(Predictor.load(bundle, backend="onnx", threads=1, precision=precision), repeats),
        f"{cores} threads, gated (as shipped)": timed(
            Predictor.load(bundle, backend="onnx", threads=cores, precision=precision), repeats
        ),
    }
    gate = backends.others_running
    backends.others_running = lambda: 0  # the split without its gate, for comparison
    try:
        forced = Predictor.load(bundle, backend="onnx", threads=cores, precision=precision)
        rows[f"{cores} threads, always split"] = timed(forced, repeats)
    finally:
        backends.others_running = gate
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8"))
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/split-PRECISION.json")
    args = parser.parse_args(argv)
    args.out = args.out or ROOT / "benchmarks" / "results" / f"split-{args.precision}.json"
    result: dict[str, Any] = {
        "command": "python benchmarks/bench_split.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": describe(),
        "bundle": str(args.bundle),
        "precision": args.precision,
        "idle": measure(args.bundle, args.precision, args.repeats),
    }
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        time.sleep(0.5)
        result["one_core_busy"] = measure(args.bundle, args.precision, args.repeats)
    finally:
        busy.kill()
        busy.wait()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for state in ("idle", "one_core_busy"):
        for name, row in result[state].items():
            print(f"{state:14} {name:32} p50 {row['p50_ms']:6.2f} ms  p95 {row['p95_ms']:6.2f} ms  "
                  f"CPU {row['cpu_ms_per_image']:6.2f} ms/image")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
