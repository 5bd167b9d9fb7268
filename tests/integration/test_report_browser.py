"""Render an evaluation report in headless Chromium and check the screenshot is a real page."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.require import missing
from tests.unit.workflows.test_evaluate import make_run, run_evaluation

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tiny_dataset, tmp_path):
    if CHROMIUM is None:
        missing("UI_TESTS", "chromium not installed (make sysdeps)")
    import torch

    from defectlens.data.manifest import Manifest
    from defectlens.inference.predictor import Predictor

    torch.set_num_threads(1)
    run = make_run(tmp_path / "run")
    result = run_evaluation(
        Predictor.load(run),
        Manifest.read(tiny_dataset),
        out_dir=tmp_path / "eval",
        run_info={"run_dir": str(run)},
        bootstrap=50,
    )
    shot = tmp_path / "report.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,4000",
        result.report_path.as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (4000, 1280)
    # a blank or error page is nearly uniform; the report has text, tables and plots all the way down
    assert img.std() > 20
    for band in np.array_split(img, 4):  # every quarter of the page has content
        assert (band < 128).mean() > 0.002
