"""The newcomer's path, CLI only and no YAML: a folder of good and bad parts to a model, a report,
a bundle and predictions, with every output kept and every message readable (issue 19's script)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import elpv_cells

pytestmark = pytest.mark.slow


def defectlens(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "defectlens", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if ok:
        assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Path:
    """``parts/{good,bad}``: 16 real photos of each (ELPV solar cells, from its package), as a user would drop
    them in folders."""
    root = tmp_path_factory.mktemp("newcomer")
    elpv_cells(root / "parts", per_class=16, names=("good", "bad"))
    return root


def test_import_detects_the_layout_and_never_overwrites(parts):
    out = defectlens("data", "import", "parts", "--out", "ds", cwd=parts)
    assert "bad" in out.stdout and "good" in out.stdout and "32 images" in out.stdout
    again = defectlens("data", "import", "parts", "--out", "ds", cwd=parts, ok=False)
    assert again.returncode == 2 and "already holds a dataset" in again.stderr and "--force" in again.stderr
    split = defectlens("data", "split", "ds", "--val", "0.25", "--test", "0.25", cwd=parts)
    assert "split (seed 0)" in split.stdout and "{" not in split.stdout  # a table, not a Python dict


def test_piping_into_head_ends_quietly(parts):
    proc = subprocess.run(
        f"{sys.executable} -m defectlens data stats ds --json | head -n 2",
        shell=True,
        cwd=parts,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.count("\n") == 2


def test_one_command_training_then_evaluate_export_predict(parts):
    typo = defectlens("train", "--data", "parts", "--epochz", "1", cwd=parts, ok=False)
    assert typo.returncode == 2 and "did you mean --epochs" in typo.stderr
    train = defectlens(
        "train", "--data", "parts", "--model", "simple_cnn", "--no-pretrained", "--input-size", "64",
        "--epochs", "2", "--patience", "0", "--name", "parts", cwd=parts,
    )  # fmt: skip
    assert "detected folder: class folders bad, good" in train.stderr
    assert "warning" not in train.stderr.lower().replace("warning: few validation images", "")
    assert "Warning" not in train.stderr  # no library warnings leak (matplotlib, torch)
    run = next((parts / "runs").glob("parts-*"))
    assert run.name in train.stdout
    assert (parts / "runs" / "data-parts" / "manifest.csv").is_file()  # the dataset is kept beside the run
    for line in train.stdout.splitlines():
        assert len(line) <= 80, line  # fits an 80-column terminal and log

    evaluated = defectlens("evaluate", str(run), cwd=parts)  # --data comes from the run
    assert (run / "eval-2" / "report.html").is_file() and (run / "eval" / "report.html").is_file()
    assert "eval-2" in evaluated.stdout

    defectlens("export", str(run), cwd=parts)
    bundle = run / "model.dlens"
    assert bundle.is_file()
    assert defectlens("export", str(run), cwd=parts, ok=False).returncode == 2  # never replaced silently

    defectlens("predict", "parts", "--model", str(bundle), cwd=parts)
    second = defectlens("predict", "parts", "--model", str(bundle), cwd=parts)
    assert (parts / "predictions" / "predictions.csv").is_file()
    assert (parts / "predictions-2" / "predictions.csv").is_file() and "predictions-2" in second.stdout
    rows = list(csv.DictReader((parts / "predictions" / "predictions.csv").open()))
    assert len(rows) == 32 and {r["truth"] for r in rows} == {"good", "bad"}
    assert all(r["defect_probability"] for r in rows)
