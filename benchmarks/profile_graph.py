"""Where a bundle's graph spends its time: ONNX Runtime's per-operator profile, one image at the input size.

Anomaly mode's latency goal (issue #29) is one matrix product against the memory bank plus the backbone's
convolutions; this says how the milliseconds split between them, per operator type, averaged over ``--runs``
single-image runs after a warm-up, in the session ``predict`` builds (2 threads here, spinning stopped after each
call). Bundles given together are timed in turns, run by run, so a VM whose speed drifts between minutes moves
them alike.

    python benchmarks/profile_graph.py BUNDLE [BUNDLE ...] [--runs 60] [--out benchmarks/results/F.json]

Prints one table per bundle (operator type, ms per run, share); ``--out`` writes them with the machine.

Beside the profile, the floor of the matrix products: their floating-point work per run (counted from the shapes
ONNX Runtime records for each MatMul) against this machine's fp32 matrix-product rate, measured in the same kind
of session on plain products (``--peak-shapes``, the best of them, read before and after the profile); the floor is
what the products would take at that rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import describe  # noqa: E402

WARMUP = 5


def operator_times(events: list[dict[str, Any]], skip: int = 0) -> dict[str, float]:
    """Milliseconds per run of each operator type from ONNX Runtime's profile events (its ``*_kernel_time`` node
    events, durations in microseconds), largest first, leaving out the first ``skip`` runs (``model_run`` events:
    the warm-up)."""
    starts = sorted(float(e["ts"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(starts) <= skip:
        raise ValueError(f"the profile holds {len(starts)} runs, not more than the {skip} to leave out")
    total: Counter[str] = Counter()
    for e in events:
        timed = e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
        if timed and float(e.get("ts", 0)) >= starts[skip]:
            total[str(e.get("args", {}).get("op_name", "?"))] += float(e.get("dur", 0))
    runs = len(starts) - skip
    return {op: us / runs / 1000.0 for op, us in total.most_common()}


def matmul_flops(events: list[dict[str, Any]], skip: int = 0) -> float:
    """Floating-point operations per run of the profile's MatMul nodes, leaving out the first ``skip`` runs: 2 x the
    output's elements x the inner dimension (the first input's last; ONNX Runtime records the shapes of the inputs
    that are not constants, and of the output)."""
    starts = sorted(float(e["ts"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    flops = 0.0
    for e in events:
        args = e.get("args", {})
        kernel = e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
        if not kernel or args.get("op_name") != "MatMul" or float(e.get("ts", 0)) < starts[skip]:
            continue
        inner = next(iter(args["input_type_shape"][0].values()))[-1]
        out = next(iter(args["output_type_shape"][0].values()))
        flops += 2.0 * float(np.prod(out)) * float(inner)
    return flops / (len(starts) - skip)


def matmul_rate(threads: int = 2, shape: tuple[int, int, int] = (1024, 1024, 1024), runs: int = 30) -> float:
    """This machine's fp32 matrix-product rate in GFLOP/s on an (m, k) x (k, n) ``shape``: the median of ``runs``
    products in the session ``predict`` builds (the same threads and spinning)."""
    import time

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from defectlens.inference.backends import _ort_session

    m, k, n = shape
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.random((k, n), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "peak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], [weight],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    session = _ort_session(model.SerializeToString(), intra_op=threads, name="plain product")
    feed = {"x": rng.random((m, k), dtype=np.float32)}
    for _ in range(WARMUP):
        session.run(None, feed)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        seconds.append(time.perf_counter() - start)
    return 2.0 * m * k * n / float(np.median(seconds)) / 1e9


def shapes(text: str) -> list[tuple[int, int, int]]:
    """``"1024x1024x1024,4096x256x4096"`` -> [(1024, 1024, 1024), (4096, 256, 4096)] (m x k x n each)."""
    out = []
    for part in text.split(","):
        dims = tuple(int(d) for d in part.lower().split("x"))
        if len(dims) != 3 or min(dims) < 1:
            raise argparse.ArgumentTypeError(f"a product's shape is M x K x N, got {part!r}")
        out.append(dims)
    return out  # type: ignore[return-value]


def roofline(times: dict[str, float], flops: float, rate_gflops: float) -> dict[str, float]:
    """The products' work, time, rate and floor for one bundle: GFLOP per run, ms in MatMul, the GFLOP/s that
    is, its share of ``rate_gflops`` (the machine's best plain-product rate), and the ms the work takes at that
    rate."""
    ms = times.get("MatMul", 0.0)
    achieved = flops / ms / 1e6 if ms else 0.0
    return {
        "matmul_gflop_per_run": flops / 1e9,
        "matmul_ms": ms,
        "matmul_gflops": achieved,
        "share_of_product_rate": achieved / rate_gflops,
        "floor_ms_at_product_rate": flops / rate_gflops / 1e6,
        "other_operators_ms": sum(times.values()) - ms,
    }


def profile(paths: list[Path], runs: int, threads: int = 2) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Each bundle's ms per run by operator type, and its MatMul work per run in FLOP."""
    from defectlens.core.bundle import read_bundle
    from defectlens.inference.backends import _ort_session  # the session predict runs: the same threads and spinning

    sessions, inputs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(paths):
            bundle = read_bundle(path)
            prefix = str(Path(tmp) / f"p{i}")
            session = _ort_session(bundle.onnx, intra_op=threads, name=str(path), profile_prefix=prefix)
            spec = bundle.spec
            x = np.random.default_rng(0).random((1, spec.in_channels, spec.input_size, spec.input_size))
            sessions.append(session)
            inputs.append({session.get_inputs()[0].name: x.astype(np.float32)})
        for _ in range(WARMUP + runs):  # in turns, run by run; the warm-up is profiled too and left out below
            for session, feed in zip(sessions, inputs, strict=True):
                session.run(None, feed)
        out, flops = {}, {}
        for path, session in zip(paths, sessions, strict=True):
            events = json.loads(Path(session.end_profiling()).read_text())
            times = operator_times(events, skip=WARMUP)
            out[str(path)] = times
            flops[str(path)] = matmul_flops(events, skip=WARMUP)
    return out, flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument(
        "--peak-shapes",
        type=shapes,
        default=shapes("1024x1024x1024,4096x256x4096"),
        help="plain products (M x K x N, comma-separated) the machine's best fp32 rate is read on",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    machine = describe()
    before = {"x".join(map(str, shape)): matmul_rate(shape=shape) for shape in args.peak_shapes}
    result, flops = profile(args.bundles, args.runs)
    after = {"x".join(map(str, shape)): matmul_rate(shape=shape) for shape in args.peak_shapes}  # the VM drifts
    best = max(*before.values(), *after.values())
    print(f"fp32 plain products, GFLOP/s: before {before}, after {after}; best {best:.0f}")
    lines = {}
    for path, times in result.items():
        total = sum(times.values())
        lines[path] = roofline(times, flops[path], best)
        print(f"{path}: {total:.2f} ms a run in operators")
        for op, ms in list(times.items())[:8]:
            print(f"  {op:16s} {ms:7.2f} ms  {100 * ms / total:5.1f} %")
        r = lines[path]
        print(
            f"  MatMul: {r['matmul_gflop_per_run']:.3f} GFLOP a run at {r['matmul_gflops']:.0f} GFLOP/s "
            f"({100 * r['share_of_product_rate']:.0f} % of the best plain product's rate): at that rate "
            f"{r['floor_ms_at_product_rate']:.2f} ms"
        )
    if args.out:
        record = {
            "runs": args.runs, "machine": machine, "operators_ms_per_run": result,
            "plain_products_gflops": {"before": before, "after": after, "best": best},
            "matmul_roofline": lines, "command": "python benchmarks/profile_graph.py " + " ".join(sys.argv[1:]),
        }  # fmt: skip
        write_record(args.out, record)


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a profile to ``path``; a profile already there stays on record under ``"earlier"`` (oldest first):
    the same graph on the same VM ran at 132 and 181 GFLOP/s hours apart, and both are evidence."""
    if path.is_file():
        old = json.loads(path.read_text())
        record = {**record, "earlier": [*old.pop("earlier", []), old]}
    path.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
