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


def _matmul(ts: float, a: list[int], out: list[int], dur: float = 1_000) -> dict:
    event = _node(ts, "MatMul", dur)
    event["args"] |= {"input_type_shape": [{"float": a}], "output_type_shape": [{"float": out}]}
    return event


def test_matmul_work_is_counted_from_the_recorded_shapes_per_run(bench):
    """2 x output elements x inner dimension: (1, 812, 177) against a (177, 5120) bank is 1.47 GFLOP a run; the
    warm-up's products and other operators do not count."""
    events = [
        _run(0), _matmul(1, [1, 812, 177], [1, 812, 5120]),
        _run(100), _matmul(101, [1, 812, 177], [1, 812, 5120]), _matmul(102, [4, 3], [4, 2]), _node(103, "Conv", 9),
        _run(200), _matmul(201, [1, 812, 177], [1, 812, 5120]), _matmul(202, [4, 3], [4, 2]),
    ]  # fmt: skip
    assert bench.matmul_flops(events, skip=1) == 2.0 * 812 * 177 * 5120 + 2.0 * 4 * 2 * 3


def test_the_roofline_is_the_work_against_the_machines_product_rate(bench):
    line = bench.roofline({"MatMul": 12.0, "Conv": 11.0, "Resize": 1.0}, 1.5e9, rate_gflops=150.0)
    assert line["matmul_gflops"] == pytest.approx(125.0) and line["share_of_product_rate"] == pytest.approx(125 / 150)
    assert line["floor_ms_at_product_rate"] == pytest.approx(10.0) and line["other_operators_ms"] == pytest.approx(12.0)


def test_the_machines_rate_is_read_on_a_real_product_of_the_shape_asked(bench):
    import argparse

    assert bench.matmul_rate(shape=(64, 32, 16), runs=3) > 0.1  # GFLOP/s: any CPU that runs the suite does far more
    assert bench.shapes("1024x1024x1024,4096X256x4096") == [(1024, 1024, 1024), (4096, 256, 4096)]
    for bad in ("1024x1024", "0x1x1", "axbxc"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            bench.shapes(bad)


def test_a_new_profile_keeps_the_ones_before_it_on_record(bench, tmp_path):
    import json

    path = tmp_path / "roofline.json"
    for best in (132.0, 181.0, 150.0):
        bench.write_record(path, {"plain_products_gflops": {"best": best}})
    record = json.loads(path.read_text())
    assert record["plain_products_gflops"]["best"] == 150.0
    assert [e["plain_products_gflops"]["best"] for e in record["earlier"]] == [132.0, 181.0]
    assert all("earlier" not in e for e in record["earlier"])
