"""benchmarks/bench_peers.py --smoke: every backend of ours timed end to end, model only and batched, the goals
computed as ratios, the machine and load recorded; Ultralytics rows skipped with a note (no peers venv needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from defectlens.inference.backends import installed_runtimes

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_smoke_run_writes_every_part(tmp_path):
    out = tmp_path / "peers.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_peers.py"), "--smoke", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    labels = {"onnx": "onnxruntime", "openvino": "openvino"}
    ours = [labels[r] for r in installed_runtimes()] + ["torch"]
    assert set(result["end_to_end"]["rows"]) == {f"ours {b} t{t}" for b in ours for t in (1, 2)}
    assert all(r["p95_ms"] >= r["p50_ms"] > 0 for r in result["end_to_end"]["rows"].values())
    assert all(d <= 1e-4 for d in result["end_to_end"]["parity_vs_torch"].values())
    assert "ours shipped onnxruntime t2" in result["model_only"]["rows"]
    assert set(result["throughput"]["img_s"]) == {"1", "4"}
    assert any("goal <= 1.2" in k for k in result["goals"]) and any("goal >= 1.5" in k for k in result["goals"])
    assert result["notes"] == ["Ultralytics rows skipped: --smoke"]
    assert "load_average_at_start" in result["machine"] and "load_before" in result["end_to_end"]
    assert "| ours onnxruntime |" in done.stdout  # the markdown table for the README
