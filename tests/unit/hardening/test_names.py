"""Issue #33: hostile and unlucky file and class names through ``predict`` and ``data import``.

A name that is not UTF-8, a 255-byte name with ``--explain``, an input called ``predictions.csv``, a
class called ``ERROR``, names that are spreadsheet formulas, and names holding terminal escapes,
newlines and bidi controls: every file keeps its row, the CSV keeps the true name (escaped against
formulas), and the terminal shows a safe rendering.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.require import import_or_missing
from tests.unit.hardening import corpus as C

FORMULA = ("=", "+", "-", "@", "\t", "\r")
#: What may never reach the terminal raw: C0/C1 controls except the newline between lines, and bidi controls.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

posix_bytes = pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="the file system needs UTF-8 names")


def read_csv(path: Path) -> list[dict[str, str]]:
    text = path.read_bytes().decode("utf-8")  # strict: the CSV is always UTF-8
    return list(csv.DictReader(io.StringIO(text, newline="")))


def put(folder: Path, name: bytes, seed: int = 0) -> Path:
    """A small PNG at ``folder/name`` (a raw byte name, as a camera share may hold)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = os.path.join(os.fsencode(folder), name)
    with open(path, "wb") as fh:  # bytes paths
        fh.write(C.encode(C.noise(seed=seed), "PNG"))
    return Path(os.fsdecode(path))


def fixed_predictor(class_names: tuple[str, ...], logits: tuple[float, ...], positive: str | None = None):
    """A torch-free Predictor of these class names that gives every image these logits."""
    from defectlens.core.spec import ModelSpec
    from defectlens.inference.predictor import Predictor

    spec = ModelSpec("simple_cnn", 16, 1, (0.5,), (0.25,), class_names=class_names, positive_class=positive).check()
    row = np.asarray(logits, np.float32)
    return Predictor(lambda x: np.tile(row, (len(x), 1)), spec, backend="fixed")


@pytest.fixture
def fixed_load(monkeypatch):
    from defectlens.inference.predictor import Predictor

    def use(*args, **kwargs):
        predictor = fixed_predictor(*args, **kwargs)
        monkeypatch.setattr(Predictor, "load", classmethod(lambda cls, *a, **k: predictor))
        return predictor

    return use


NOT_UTF8 = [b"\xff.png", b"caf\xe9.png", b"\xc3\x28.png", b"\xed\xa0\x80.png", b"\x80\x80\x80.png", b"ok_\xfe\xfe.jpg"]


@posix_bytes
def test_names_that_are_not_utf8_keep_every_row(bundle, tmp_path):
    folder = tmp_path / "parts"
    C.good_images(folder, n=3)
    for i, name in enumerate(NOT_UTF8):
        put(folder, name, seed=i)
    result = C.run_cli(["predict", str(folder), "--model", str(bundle), "--out", str(tmp_path / "out")])
    assert not result.crash and result.code == 0, (result.crash, result.err)
    rows = read_csv(tmp_path / "out" / "predictions.csv")
    assert len(rows) == 3 + len(NOT_UTF8) and all(r["status"] == "ok" for r in rows)
    shown = {r["file"].rsplit("/", 1)[-1] for r in rows}
    assert {"\\xff.png", "caf\\xe9.png", "\\xc3(.png", "\\xed\\xa0\\x80.png"} <= shown
    assert f"{3 + len(NOT_UTF8)} files" in result.out and "predictions.csv" in result.out  # the summary


@posix_bytes
def test_data_import_skips_names_that_are_not_utf8_and_keeps_the_rest(tmp_path):
    src = tmp_path / "src"
    for label in ("ok", "defect"):
        C.good_images(src / label, n=2)
    for i, name in enumerate(NOT_UTF8):
        put(src / "ok", name, seed=10 + i)
    result = C.run_cli(["data", "import", str(src), "--out", str(tmp_path / "ds")])
    assert not result.crash and result.code == 0, (result.crash, result.err)
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert len(info["skipped"]) == len(NOT_UTF8)
    assert all("not valid UTF-8" in s["reason"] for s in info["skipped"])
    rows = read_csv(tmp_path / "ds" / "manifest.csv")
    assert len(rows) == 4
    assert not RAW_CONTROL.search(result.out) and "\\xff" in result.out


LONG = {
    "ascii 255 bytes": "a" * 251 + ".png",
    "multibyte 254 bytes": "é" * 125 + ".png",
    "shared prefix 1": "p" * 240 + "_one.png",
    "shared prefix 2": "p" * 240 + "_two.png",
    "a formula": "=" + "x" * 250 + ".png",
}


@pytest.mark.slow
def test_255_byte_names_with_explain(bundle, tmp_path):
    import_or_missing("pytorch_grad_cam", flag="EXTRAS", reason="Grad-CAM needs the [train] extra")
    folder = tmp_path / "parts"
    for i, name in enumerate(LONG.values()):
        assert len(name.encode()) <= 255
        C.noise(seed=i).save(folder.mkdir(exist_ok=True) or folder / name)
    out = tmp_path / "out"
    result = C.run_cli(["predict", str(folder), "--model", str(bundle), "--out", str(out), "--explain"])
    assert not result.crash and result.code == 0, (result.crash, result.err)
    rows = read_csv(out / "predictions.csv")
    overlays = [Path(r["overlay"]) for r in rows]
    assert len(rows) == len(LONG) and all(p.is_file() and len(p.name.encode()) <= 255 for p in overlays)
    assert len({p.name for p in overlays}) == len(LONG)  # shortened with a hash: still one file each
    single = C.run_cli(["predict", str(folder / LONG["multibyte 254 bytes"]), "--model", str(bundle), "--explain",
                        "--out", str(tmp_path / "one")])  # fmt: skip
    assert single.code == 0, single.err
    overlay = Path(json.loads(single.out)["overlay"])
    assert overlay.is_file() and len(overlay.name.encode()) <= 255 and overlay.name.startswith("é" * 50)


def test_overlay_names_fit_and_stay_distinct():
    from defectlens.workflows.predict import overlay_name

    stems = ["x" * n for n in range(200, 300, 7)] + ["é" * n for n in (100, 120, 127, 128, 200)]
    names = [overlay_name(Path(s + ".png"), prefix="00001_") for s in stems]
    assert all(len(n.encode()) <= 255 and n.endswith("_gradcam.png") for n in names)
    assert len(set(names)) == len(names)
    assert overlay_name(Path("short.png")) == "short_gradcam.png"  # a name that fits is kept


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_an_input_named_predictions_csv_gets_its_row(depth, bundle, tmp_path):
    folder = tmp_path / "parts"
    C.good_images(folder, n=2)
    sub = folder.joinpath(*[f"d{i}" for i in range(depth)])
    sub.mkdir(parents=True, exist_ok=True)
    (sub / "predictions.csv").write_bytes(C.encode(C.noise(seed=5), "PNG"))  # a PNG, oddly named
    out = folder / "results"  # the output inside the folder: only the file this run writes is left out
    argv = ["predict", str(folder), "--model", str(bundle), "--out", str(out)]
    assert C.run_cli(argv).code == 0
    again = C.run_cli([*argv, "--force"])
    assert again.code == 0, again.err
    files = [r["file"] for r in read_csv(out / "predictions.csv")]
    assert str(sub / "predictions.csv") in files
    assert str(out / "predictions.csv") not in files and len(files) == 3


@pytest.mark.parametrize("name", ["ERROR", "NEEDS_REVIEW", "(error)", "error", "(needs review)"])
def test_a_class_named_like_a_status_never_merges_with_failed_files(name, fixed_load, tmp_path):
    fixed_load(("ok", name), (0.0, 3.0), positive=name)
    folder = tmp_path / "parts"
    C.good_images(folder, n=3)
    (folder / "broken.png").write_bytes(b"not an image")
    result = C.run_cli(["predict", str(folder), "--model", "fixed", "--out", str(tmp_path / "out")])
    assert result.code == 1, result.err
    lines = result.out.splitlines()
    table = [line.rsplit(None, 1) for line in lines[2 : lines.index("predictions:")]]  # after title and header
    found = sorted((label.strip(), int(n)) for label, n in table)
    assert found == sorted([("ok", 0), (name, 3), ("(error)", 1)])  # never 4 under one label


@pytest.mark.parametrize("prefix", FORMULA)
def test_formula_names_are_escaped_in_the_csv(prefix, fixed_load, tmp_path):
    cls = f"{prefix if prefix.isprintable() else '@'}cmd|' /C calc'!A0"  # class names hold no control character
    fixed_load(("ok", cls), (0.0, 3.0), positive=cls)
    folder = tmp_path / "parts"
    C.good_images(folder, n=1)
    C.noise(seed=3).save(folder / f"{prefix}1+2.png")
    C.noise(seed=4).save(folder / f"{prefix}HYPERLINK(x).png")
    out = tmp_path / "out"
    with C.cwd(folder):  # file names relative to here: the cell starts with the name itself
        result = C.run_cli(["predict", ".", "--model", "fixed", "--out", str(out)])
    assert result.code == 0, result.err
    rows = read_csv(out / "predictions.csv")
    assert len(rows) == 3
    for row in rows:
        assert all(not v.startswith(FORMULA) for v in row.values()), row
    assert {r["file"] for r in rows} >= {f"'{prefix}1+2.png", f"'{prefix}HYPERLINK(x).png"}
    assert all(r["prediction"] == f"'{cls}" for r in rows)


NASTY = {
    "escape": "a\x1b[2J\x1b[31mred.png",
    "newline": "x.png\nMISMATCH rows: 0\nerror forged.png",
    "carriage return": "ok\rMISMATCH rows: 0.png",
    "bidi": "part_\u202egnp.exe",
    "isolate": "a\u2066b\u2069.png",
    "bell and backspace": "b\x07\x08.png",
    "c1 control": "c\x9bd.png",
}


@pytest.mark.parametrize("kind", sorted(NASTY))
def test_control_characters_never_reach_the_terminal(kind, bundle, tmp_path):
    folder = tmp_path / "parts"
    C.good_images(folder, n=1)
    name = NASTY[kind]
    (folder / name).write_bytes(b"not an image")  # an error row: its name is printed in the summary
    result = C.run_cli(["predict", str(folder), "--model", str(bundle), "--out", str(tmp_path / "out")])
    assert result.code == 1, result.err
    assert not RAW_CONTROL.search(result.out), repr(result.out)
    assert not any(line.startswith(("MISMATCH", "error forged")) for line in result.out.splitlines())
    rows = read_csv(tmp_path / "out" / "predictions.csv")
    assert str(folder / name) in {r["file"] for r in rows}  # the CSV keeps the true name


def test_terminal_safe_by_hand():
    from defectlens.core.text import csv_cell, terminal_safe

    assert terminal_safe("part_\u202egnp.exe") == "part_\\u202egnp.exe"
    assert terminal_safe("a\nb\x1b[0m") == "a\\nb\\x1b[0m"
    assert terminal_safe(os.fsdecode(b"\xff")) == "\\xff"
    assert terminal_safe("défaut 欠陥") == "défaut 欠陥"
    assert csv_cell("=1+2") == "'=1+2" and csv_cell("a=1") == "a=1" and csv_cell(None) == "" and csv_cell(-1) == -1


@pytest.mark.parametrize("kind", sorted(NASTY))
def test_an_error_line_naming_a_nasty_path_stays_one_safe_line(kind, bundle, tmp_path):
    result = C.run_cli(["predict", str(tmp_path / NASTY[kind]), "--model", str(bundle)])
    assert not result.crash and result.code == 2, (result.crash, result.err)
    assert len(result.err.strip().splitlines()) == 1 and not RAW_CONTROL.search(result.err), repr(result.err)
