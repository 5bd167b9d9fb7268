"""The graph profiler (``benchmarks/profile_graph.py``): ONNX Runtime's profile events summed per operator type,
per run, with the warm-up runs left out."""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("profile_graph")


def _run(ts: float) -> dict:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": 900}


def _node(ts: float, op: str, dur: float) -> dict:
    return {"cat": "Node", "name": f"{op}_0_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_operator_times_average_the_runs_after_the_warm_up_per_operator(bench):
    events = [
        _run(0), _node(1, "MatMul", 50_000), _node(2, "Conv", 40_000),  # warm-up: slow, left out
        _run(100), _node(101, "MatMul", 4_000), _node(102, "Conv", 2_000), _node(103, "Conv", 1_000),
        _run(200), _node(201, "MatMul", 6_000), _node(202, "Conv", 3_000),
        {"cat": "Node", "name": "MatMul_0_fence_before", "ts": 203, "dur": 99_000, "args": {"op_name": "MatMul"}},
    ]  # fmt: skip
    times = bench.operator_times(events, skip=1)
    assert times == {"MatMul": 5.0, "Conv": 3.0}  # ms per run over the 2 runs kept; fences are not kernel time
    assert list(times) == ["MatMul", "Conv"]
    with pytest.raises(ValueError, match="holds 3 runs, not more than the 3"):
        bench.operator_times(events, skip=3)
