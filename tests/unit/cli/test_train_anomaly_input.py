"""``defectlens train --task anomaly`` on bad input: each problem the issue lists is named by file or value.

The refusals (no normal class, no or too few good images, a mask of the wrong size) come before any fitting,
so they run through :func:`defectlens.cli.main` in this process. The problems that do not stop the run (a
defect filed under ``train/good``, a mask named unlike its image, gray and RGB images in one folder) are
checked on one real ``python -m defectlens train`` process, as an operator sees its console.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from defectlens.cli import main
from tests.anomaly_fixtures import scratched, train_flags, write_parts

ROOT = Path(__file__).resolve().parents[3]


def train(source: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(source), "--out", str(out), *train_flags(), *extra]


def test_a_dataset_without_good_images_is_refused_naming_its_classes(tmp_path, capsys) -> None:
    root = write_parts(tmp_path / "p", good=12, test_good=2, test_bad=3)
    for split in ("train", "test"):
        for f in (root / split / "good").iterdir():
            f.unlink()
        (root / split / "good").rmdir()
    (root / "train" / "scratch").mkdir()
    for i in range(3):
        scratched(np.random.default_rng(i))[0].save(root / "train" / "scratch" / f"t{i}.png")
    assert main(train(root, tmp_path / "runs")) == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert (
        f"{root}: anomaly mode fits on the normal class only; name it with --normal (the dataset's classes: "
        "scratch)" in err
    )
    assert "Traceback" not in err


def test_an_empty_good_folder_is_refused_with_the_count(tmp_path, capsys) -> None:
    root = write_parts(tmp_path / "p", good=0, test_good=3, test_bad=3)
    assert main(train(root, tmp_path / "runs")) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (
        f"{root}: anomaly mode needs at least 10 'good' training images; the source has 0 outside its test split" in err
    )


def test_fewer_than_ten_good_images_is_refused_with_the_count(tmp_path, capsys) -> None:
    root = write_parts(tmp_path / "p", good=8, test_good=2, test_bad=2)
    assert main(train(root, tmp_path / "runs")) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (
        f"{root}: anomaly mode needs at least 10 'good' training images; the source has 8 outside its test split" in err
    )
    assert not list((tmp_path / "runs").glob("*anomaly*"))  # no run folder left behind


def test_a_mask_of_another_size_than_its_image_is_refused_before_fitting(tmp_path, capsys) -> None:
    root = write_parts(tmp_path / "p", good=12, test_good=2, test_bad=3)
    Image.new("L", (50, 40), 255).save(root / "ground_truth" / "scratch" / "001_mask.png")
    assert main(train(root, tmp_path / "runs")) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "001_mask.png: the mask is 50x40 but its image test/scratch/001.png is 96x96" in err
    assert not list((tmp_path / "runs").glob("*anomaly*"))


def test_an_inspection_region_that_cannot_be_used_is_refused_by_name_before_fitting(tmp_path, capsys) -> None:
    root = write_parts(tmp_path / "p", good=12, test_good=2, test_bad=2)
    assert main(train(root, tmp_path / "runs", "--roi", str(tmp_path / "nowhere.png"))) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{tmp_path / 'nowhere.png'}" in err and "Traceback" not in err
    Image.new("L", (96, 96), 0).save(tmp_path / "black.png")
    assert main(train(root, tmp_path / "runs", "--roi", str(tmp_path / "black.png"))) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "black.png: the inspection region's mask has no white pixel: nothing would be inspected" in err
    assert not list((tmp_path / "runs").glob("*anomaly*"))  # no run folder left behind


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One ``defectlens train --task anomaly`` process on a folder with three problems that do not stop it:
    ``train/good/zz_scratched.png`` is a defect, every fifth good image is RGB, and the mask of
    ``test/scratch/002.png`` is named ``002.png`` (not ``002_mask.png``)."""
    tmp = tmp_path_factory.mktemp("messy")
    root = write_parts(tmp / "p", good=30, test_good=4, test_bad=4, seed=3)
    rng = np.random.default_rng(11)
    img, _ = scratched(rng)
    img.save(root / "train" / "good" / "zz_scratched.png")
    rgb = sorted((root / "train" / "good").glob("0*.png"))[::5]
    for f in rgb:
        Image.open(f).convert("RGB").save(f)
    (root / "ground_truth" / "scratch" / "002_mask.png").rename(root / "ground_truth" / "scratch" / "002.png")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "400"}
    cmd = [sys.executable, "-m", "defectlens", *train(root, tmp / "runs")]
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=900, check=False)
    runs = sorted((tmp / "runs").glob("*anomaly*"))
    return {"proc": proc, "root": root, "run": runs[0] if runs else None, "rgb": [f.name for f in rgb]}


def test_a_defect_filed_under_good_is_named_on_the_console_and_in_outliers_csv(messy_run) -> None:
    proc = messy_run["proc"]
    assert proc.returncode == 0, proc.stderr  # type: ignore[attr-defined]
    err = " ".join(proc.stderr.split())  # type: ignore[attr-defined]
    assert "warning: 1 training images look unlike the other normal ones" in err
    assert "train/good/zz_scratched.png" in err
    rows = list(csv.DictReader((messy_run["run"] / "outliers.csv").open(encoding="utf-8")))  # type: ignore[operator]
    assert [r["path"] for r in rows] == ["train/good/zz_scratched.png"]


def test_a_mask_named_unlike_its_image_is_named_with_the_image_left_without_one(messy_run) -> None:
    err = " ".join(messy_run["proc"].stderr.split())  # type: ignore[attr-defined]
    assert "have no mask (e.g. test/scratch/002.png)" in err
    assert "ground_truth/scratch/002.png: a mask that matches no test image" in err


def test_gray_and_rgb_images_together_are_converted_said_so_and_none_dropped(messy_run) -> None:
    err = " ".join(messy_run["proc"].stderr.split())  # type: ignore[attr-defined]
    rgb = len(messy_run["rgb"])  # type: ignore[arg-type]
    assert rgb == 6
    # 39 images in all: 31 in train/good (6 of them RGB), 4 in test/good, 4 in test/scratch
    assert (
        f"note: the images mix pixel modes L ({39 - rgb}), RGB ({rgb}); each is converted to 1-channel (grayscale) "
        "model input, none left out" in err
    )
    saved = torch.load(messy_run["run"] / "best.pt", map_location="cpu", weights_only=False)  # type: ignore[operator]
    fit, val = saved["anomaly"]["fit"]["images"], saved["anomaly"]["threshold_source"]
    held_out = int(val.split()[0])
    assert fit + held_out == 31  # every good training image, gray or RGB, was fitted or held out: none dropped
