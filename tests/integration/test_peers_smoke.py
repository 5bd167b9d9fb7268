"""The Ultralytics peer rows in smoke mode: YOLO11n-cls trained from scratch in its own virtualenv
(AGPL: never a defectlens dependency), scored by our evaluation and timed, on the real casting split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmark_scripts import load_benchmark
from tests.require import missing

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.realdata]


@pytest.fixture(scope="module")
def peers_python() -> Path:
    found = load_benchmark("peer_rows").peer_python()
    if found is None:
        missing("PEERS", "no peers virtualenv (.venv-peers: make peers; see benchmarks/peers/README.md)")
    return found


def test_yolo_rows_train_score_and_time_offline(peers_python, shared_datasets, tmp_path):
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "run_real.py"), "--smoke", "--quiet", "--datasets", "casting",
        "--approaches", "yolo11n_cls", "--shared", str(shared_datasets), "--work", str(tmp_path / "work"),
        "--out", str(tmp_path / "out"), "--no-readme",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    entry = json.loads((tmp_path / "out" / "casting.json").read_text())["approaches"]["yolo11n_cls"]
    assert entry["pretrained"] is False and "yaml" in entry["peer"]["weights"]
    assert entry["epochs_run"] == 1 and entry["train_seconds"] > 0
    assert 0.0 <= entry["test"]["accuracy"] <= 1.0 and entry["test"]["n"] >= 1
    assert entry["threshold"]["method"] == "f1"  # fitted on validation by our evaluation, as for ours
    assert entry["latency_ms_p50"] > 0
    assert not list((tmp_path / "work").rglob("*.pt.tmp"))
