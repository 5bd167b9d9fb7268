"""benchmarks/run_real.py in smoke mode (16 images per class, 1 epoch, 64 px), so the script that
produces the README results table cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_run_real_smoke(tmp_path):
    # NEU-DET (binary remap) imports in seconds when the real data is beside the checkout; without
    # it, ELPV from its PyPI package keeps the script exercised on any machine.
    has_neu = (ROOT.parent / "shared" / "datasets" / "neu-det").is_dir()
    datasets = ["neu-binary"] if has_neu else ["elpv"]
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "run_real.py"),
        "--smoke",
        "--quiet",
        "--datasets",
        *datasets,
        "--approaches",
        "ours",
        "frozen_lite0",
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "out"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in datasets:
        res = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert res["smoke"] is True
        assert set(res["approaches"]) == {"ours", "frozen_lite0"}
        for entry in res["approaches"].values():
            assert 0.0 <= entry["test"]["accuracy"] <= 1.0
            assert entry["latency_ms_p50"] > 0
            assert entry["train_seconds"] > 0
            # the listed test errors are the ones the accuracy counts
            wrong = round((1 - entry["test"]["accuracy"]) * entry["test"]["n"])
            assert len(entry["test_errors"]) == wrong
            assert all(e["label"] != e["prediction"] for e in entry["test_errors"])
        assert (tmp_path / "out" / f"{name}.dlens").is_file()
        assert not (tmp_path / "out" / f"{name}-frozen_lite0.dlens").exists()

    # 3-fold cross-validation of our recipe on the same smoke data: every image tested once, and for
    # a binary task the pooled defect recall counts the listed missed defects
    done = subprocess.run(
        [*cmd[:-5], "--cv", "3", "--no-readme", *cmd[-4:]], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cv = json.loads((tmp_path / "out" / f"{datasets[0]}.json").read_text())["cv"]
    assert cv["images"] == sum(f["n"] for f in cv["per_fold"]) == 32
    listed = [e for f in cv["per_fold"] for e in f["test_errors"]]
    assert cv["errors"] == len(listed)
    positive = "scratches" if has_neu else "defective"
    assert cv["missed_defects"] == sum(e["label"] == positive for e in listed)
    assert cv["pooled_defect_recall"] == (cv["defects"] - cv["missed_defects"]) / cv["defects"]
    # each out-of-fold error carries the probability given to its recorded label; the confident ones
    # are listed for label review
    assert all(0.0 <= e["p_label"] <= 1.0 for e in listed)
    assert cv["contradicted"] == sorted(e["path"] for e in listed if e["p_label"] < cv["contradicted_below"])

    # a finished run of the recipe already paid for is recorded as its seed instead of trained again
    # (--adopt); a run of another recipe is refused, naming what differs
    runs = tmp_path / "work" / datasets[0] / "runs"
    ours = next(runs.glob("ours-*"))
    frozen = next(runs.glob("frozen_lite0-*"))
    adopt = [*cmd[:-5], "--no-readme", "--seeds", "0", *cmd[-4:], "--adopt"]
    refused = subprocess.run([*adopt, str(frozen)], capture_output=True, text=True, timeout=900)
    assert refused.returncode != 0
    assert "not the current" in refused.stderr and str(frozen) in refused.stderr
    done = subprocess.run([*adopt, str(ours)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    res = json.loads((tmp_path / "out" / f"{datasets[0]}.json").read_text())
    (seed0,) = res["seeds"]["runs"]
    assert seed0["seed"] == 0 and seed0["adopted_from"] == str(ours)
    assert seed0["test"]["accuracy"] == res["approaches"]["ours"]["test"]["accuracy"]
    assert seed0["train_seconds"] > 0
    assert res["seeds"]["by_cpu"][seed0["cpu"]]["seeds"] == [0]

    # the same run adopted as the results table's row: exported and timed again, not trained
    done = subprocess.run(
        [*cmd[:-5], "--no-readme", *cmd[-4:], "--adopt", str(ours)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    res = json.loads((tmp_path / "out" / f"{datasets[0]}.json").read_text())
    row = res["approaches"]["ours"]
    assert row["adopted_from"] == str(ours) and row["run_dir"] == str(ours)
    assert row["test"]["accuracy"] == seed0["test"]["accuracy"] and row["latency_ms_p50"] > 0
    assert row["machine"]["cpu"] == seed0["cpu"]
    assert len(list(runs.glob("ours-*"))) == 1  # nothing trained
