"""``benchmarks/bench_log.py`` measures what it says: every id its writers were given is a row of the log."""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import BENCHMARKS, load_benchmark


@pytest.mark.slow
def test_a_short_case_counts_every_committed_row(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the writer processes import the script by name
    bench = load_benchmark("bench_log")
    location = str(tmp_path / "log.sqlite")
    bench.InspectionLog(location).close()
    case = bench.run_case(location, 2, 4, 0.3)
    assert case["writers"] == 2 and case["rows_per_commit"] == 4 and case["rows"] > 0
    assert case["rows"] % 4 == 0 and case["rows_in_log"] == case["rows"] and case["ids_unique"]
    assert 0 < case["commit_ms"]["p50"] <= case["commit_ms"]["p99"] <= case["commit_ms"]["max"]
