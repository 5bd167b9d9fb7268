"""DDP: two gloo processes on CPU train the tiny dataset; rank 0 alone writes the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_ddp_two_gloo_processes(tiny_dataset, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "model: simple_cnn\npretrained: false\nchannels: 1\ninput_size: 32\nbatch_size: 8\nlr: 0.003\n"
        "augment: light\npatience: 0\nworkers: 1\nevaluate: false\nthreads: 1\n"
    )
    out = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "defectlens",
        "train",
        "--config",
        str(recipe),
        "--data",
        str(tiny_dataset),
        "--epochs",
        "2",
        "--out",
        str(out),
        "--name",
        "ddp",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list(out.iterdir())
    assert len(runs) == 1  # rank 0 alone created a run folder
    rows = [json.loads(line) for line in (runs[0] / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert (runs[0] / "best.pt").is_file()
    log = (runs[0] / "train.log").read_text()
    assert "train 48, val 16" in log
    assert "distributed: 2 processes, backend gloo" in log
