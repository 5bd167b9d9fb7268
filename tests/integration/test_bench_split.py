"""benchmarks/bench_split.py: the single-image split measured idle and with a busy core, as shipped and
forced, at 1 thread and every core, into one JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from defectlens.inference.backends import usable_cores

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_run_writes_every_row(bundle, tmp_path):
    out = tmp_path / "split.json"
    script = str(ROOT / "benchmarks" / "bench_split.py")
    cmd = [sys.executable, script, str(bundle), "--repeats", "20", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    cores = usable_cores()
    rows = {"1 thread", f"{cores} threads, gated (as shipped)", f"{cores} threads, always split"}
    for state in ("idle", "one_core_busy"):
        assert set(result[state]) == rows
        assert all(r["p95_ms"] >= r["p50_ms"] > 0 and r["cpu_ms_per_image"] > 0 for r in result[state].values())
    assert result["command"].startswith("python benchmarks/bench_split.py") and "cpu" in result["machine"]
    assert "one_core_busy" in done.stdout
