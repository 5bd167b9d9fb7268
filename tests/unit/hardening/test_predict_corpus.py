"""Issue #18 items 1-4: every file of a folder gets a row, every single file a result or a clean error.

Run through the command line, as a user meets them. Permission cases cannot be reproduced as root
(the test machines run as root, which reads mode-000 files and folders), so those two are simulated
by making the listing or the open raise PermissionError, as the kernel would for another user.
"""

from __future__ import annotations

import csv
import json
import pathlib
from pathlib import Path

import pytest

from tests.unit.hardening import corpus as C

#: folder cases: what is put beside two good images, and the words of its error row
FOLDER_CASES = {
    "lab_tiff": ("lab.tif", "unsupported image mode LAB"),
    "bracket_names": ("[bold]broken.png", "not an image"),
    **{kind: (None, C.WALK_REASONS[kind]) for kind in C.WALK_PROBLEMS},
}

#: single files: (exit code, status, words of reason or warning)
FILE_CASES = {
    "lab.tif": (1, "error", "unsupported image mode LAB"),
    "eps_renamed.jpg": (1, "error", "not an image in an accepted format"),
    "bomb_header.png": (1, "error", "image too large"),
    "zeroed_block.jpg": (0, "ok", "corrupt JPEG data"),
    "random_block.jpg": (1, "error", "truncated or corrupt"),
    "truncated.jpg": (1, "error", "truncated"),
    "no_end_marker.jpg": (1, "error", "truncated"),
    "empty.png": (1, "error", "empty file"),
    "text.png": (1, "error", "not an image"),
    "animated.gif": (0, "ok", "more than one frame (animated or multi-page); the first is used"),
    "rotated.jpg": (0, "ok", ""),
    "bad_exif.jpg": (0, "ok", "EXIF"),
    "cmyk.jpg": (0, "ok", ""),
    "sixteen_bit.png": (0, "ok", ""),
    "float.tif": (0, "ok", ""),
    "ycbcr.tif": (0, "ok", ""),
}


def _simulate_unreadable(monkeypatch: pytest.MonkeyPatch, locked: Path) -> None:
    """What a non-root user meets in a mode-000 folder: listing it raises PermissionError."""
    real = pathlib.Path.iterdir

    def iterdir(self: Path):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", iterdir)


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_folder_case_gets_an_error_row_and_the_batch_its_csv(case, bundle, tmp_path, monkeypatch):
    folder = tmp_path / "parts"
    C.good_images(folder / "ok")
    name, words = FOLDER_CASES[case]
    if case == "lab_tiff":
        bad = folder / "ok" / name
        bad.write_bytes(C.image_files()[name])
    elif case == "bracket_names":
        C.noise().save(folder / "ok" / "part[1].png")
        bad = folder / "ok" / name
        bad.write_bytes(b"x")
    else:
        bad = C.add_walk_problem(folder / "ok", case)
        if case == "unreadable_subfolder":
            _simulate_unreadable(monkeypatch, bad)
    out = tmp_path / "out"
    result = C.run_cli(["predict", str(folder), "--model", str(bundle), "--out", str(out)])
    assert not result.crash and result.code == 1, (result.crash, result.err)
    rows = list(csv.DictReader((out / "predictions.csv").open(encoding="utf-8")))
    errors = [r for r in rows if r["status"] == "error"]
    assert [Path(r["file"]) for r in errors] == [bad]
    assert words in errors[0]["reason"]
    assert sum(r["status"] == "ok" for r in rows) == (3 if case == "bracket_names" else 2)
    assert f"error {bad}: " in result.out  # user strings print as they are (rich markup off)


@pytest.mark.parametrize("name", sorted(FILE_CASES))
def test_single_file_gets_a_result_or_a_clean_error(name, bundle, tmp_path):
    path = tmp_path / name
    path.write_bytes(C.image_files()[name])
    code, status, words = FILE_CASES[name]
    result = C.run_cli(["predict", str(path), "--model", str(bundle)])
    assert not result.crash and result.code == code, (result.crash, result.err)
    row = json.loads(result.out)
    assert row["status"] == status
    assert words in (row.get("reason", "") if status == "error" else row.get("warning", ""))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "make", "warning"), [("big16.png", C.png16_64mpx, ""), ("huge.jpg", C.huge_jpeg, "decoded at 4500 x 4000")]
)
def test_large_images_decode_within_the_limit(name, make, warning, bundle, tmp_path):
    path = tmp_path / name
    path.write_bytes(make())
    result = C.run_cli(["predict", str(path), "--model", str(bundle)])
    row = json.loads(result.out)
    assert result.code == 0 and row["status"] == "ok" and warning in row.get("warning", "")


def test_unreadable_file_says_permission_denied(bundle, tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    C.noise().save(path)
    real = pathlib.Path.open

    def open_(self: Path, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", open_)
    row = json.loads(C.run_cli(["predict", str(path), "--model", str(bundle)]).out)
    assert row["status"] == "error" and row["reason"] == "permission denied"


def test_warning_column_in_the_csv(bundle, tmp_path):
    folder = tmp_path / "parts"
    C.good_images(folder)
    (folder / "zeroed.jpg").write_bytes(C.image_files()["zeroed_block.jpg"])
    result = C.run_cli(["predict", str(folder), "--model", str(bundle), "--out", str(tmp_path / "out")])
    assert result.code == 0
    rows = {Path(r["file"]).name: r for r in csv.DictReader((tmp_path / "out" / "predictions.csv").open())}
    assert rows["zeroed.jpg"]["status"] == "ok" and "corrupt JPEG data" in rows["zeroed.jpg"]["warning"]
    assert rows["good_0.png"]["warning"] == ""
    assert "warning " in result.out and "zeroed.jpg" in result.out


def test_a_fifo_given_directly_is_never_opened(bundle, tmp_path):
    fifo = C.add_walk_problem(tmp_path, "fifo")
    row = json.loads(C.run_cli(["predict", str(fifo), "--model", str(bundle)]).out)
    assert row["status"] == "error" and "FIFO" in row["reason"]
