"""The serve load benchmark runs end to end in its smoke mode (no speed is asserted here)."""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.mark.slow
def test_bench_serve_smoke_writes_its_figures(bundle, tmp_path):
    bench = load_benchmark("bench_serve")
    out = tmp_path / "serve.json"
    argv = [
        str(bundle),
        "--smoke",
        "--rounds",
        "2",
        "--rate",
        "12",
        "--images",
        str(tmp_path / "none"),
        "--out",
        str(out),
    ]
    result = bench.main(argv)
    assert out.is_file()
    for mode in ("batching_on", "batching_off"):
        r = result[mode]
        assert r["requests"] > 0 and r["errors"] == 0 and r["every_request_logged"] is True
        assert r["mean_batch_size"] >= 1.0 and {"p50_ms", "p95_ms", "p99_ms", "req_s"} <= set(r)
        assert r["cpu_idle"] is None or 0.0 <= r["cpu_idle"] <= 1.0
    assert result["batching_off"]["mean_batch_size"] == 1.0
    base = result["model_only"]
    assert base["img_s_before"] > 0 and base["img_s_after"] > 0
    assert base["img_s"] == round((base["img_s_before"] + base["img_s_after"]) / 2, 1)
    assert result["served_over_model_only"] == round(result["batching_on"]["req_s"] / base["img_s"], 3)
    assert set(result["goals"]) == {"served>=0.7*model_only", "p99<=50ms", "zero_errors", "every_request_logged"}
    rounds = result["rounds"]
    assert len(rounds) == 2 and result["batching_on"]["req_s"] in {r["served_req_s"] for r in rounds}
    assert min(r["served_over_model_only"] for r in rounds) == result["served_over_model_only"]  # lower middle of 2
    assert result["rounds_meeting_each_goal"]["zero_errors"] == 2
    (paced,) = result["at_line_rate"]  # 4 clients on a schedule of 12 requests/s in all: no faster than that
    assert paced["offered_req_s"] == 12 and 0 < paced["req_s"] <= 12 * 1.25
    assert paced["errors"] == 0 and paced["every_request_logged"] is True
