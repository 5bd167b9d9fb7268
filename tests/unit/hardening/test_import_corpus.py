"""Issue #18 items 3, 6 and 7: ``data import`` reports every file it cannot use (never drops one),
refuses what a hostile CSV asks for, and ``data split`` refuses settings that make no usable split.
"""

from __future__ import annotations

import json
import pathlib
import tracemalloc
from pathlib import Path

import pytest

from defectlens.data.importers import import_dataset
from defectlens.data.importers._probe import probe_file
from tests.unit.hardening import corpus as C


def _info(out: Path) -> dict:
    return json.loads((out / "dataset.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", sorted(C.IMPORTS))
def test_import_case(case, tmp_path, monkeypatch):
    spec = C.IMPORTS[case]
    src = spec.make(tmp_path / "src")
    if case == "folder_unreadable_subfolder":  # root lists mode-000 folders: simulate the refusal
        locked = src / "defect" / "locked"
        real = pathlib.Path.iterdir
        monkeypatch.setattr(
            pathlib.Path,
            "iterdir",
            lambda self: (_ for _ in ()).throw(PermissionError(13, "denied")) if self == locked else real(self),
        )
    out = tmp_path / "ds"
    result = C.run_cli(["data", "import", str(src), "--out", str(out), *spec.flags])
    assert not result.crash and result.code == 0, (result.crash, result.err)
    info = _info(out)
    skipped = {s["path"]: s["reason"] for s in info["skipped"]}
    for path, words in spec.skipped.items():
        assert words in skipped[path], skipped
    if case.startswith("folder_"):
        kind = case.removeprefix("folder_")
        reasons = " ".join(skipped.values())
        if kind in C.WALK_REASONS:
            assert C.WALK_REASONS[kind] in reasons, skipped
    assert spec.warning.lower() in " ".join(info["warnings"]).lower()
    if spec.records is not None:
        lines = (out / "manifest.csv").read_text(encoding="utf-8").splitlines()
        assert len(lines) - 1 == spec.records


def test_latin1_labels_keep_their_letters(tmp_path):
    csv = C.csv_source(tmp_path / "src", "path,label\na.png,défaut\nb.png,ok\n", encoding="cp1252")
    manifest = import_dataset(csv, fmt="csv", workers=1)
    assert manifest.classes == ["défaut", "ok"]
    assert any("cp1252" in w for w in manifest.info["warnings"])


def test_outside_root_is_read_only_when_allowed(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "x.png"
    elsewhere.parent.mkdir()
    C.noise(seed=9).save(elsewhere)
    csv = C.csv_source(tmp_path / "src", f"path,label\n{elsewhere},ok\na.png,ok\nb.png,defect\n")
    out = tmp_path / "ds"
    result = C.run_cli(["data", "import", str(csv), "--out", str(out), "--allow-outside-root"])
    assert result.code == 0 and len((out / "manifest.csv").read_text().splitlines()) == 4


def test_a_conflict_alone_is_a_clean_refusal(tmp_path):
    csv = C.csv_source(tmp_path / "src", "path,label\na.png,ok\na.png,defect\n", images=("a.png",))
    result = C.run_cli(["data", "import", str(csv), "--out", str(tmp_path / "ds")])
    assert result.code == 2 and "conflict" in result.err


def test_files_are_hashed_in_chunks(tmp_path):
    """A valid PNG with 64 MB of trailing bytes: probing it never holds the file in memory."""
    path = tmp_path / "padded.png"
    C.noise().save(path)
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size + (64 << 20))  # sparse: costs no disk
    tracemalloc.start()
    probe = probe_file(str(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(probe["sha256"]) == 64
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB for a 64 MiB file"


def _split_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for label in ("ok", "defect"):
        for i in range(12):
            path = src / label / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            C.noise(seed=1000 * (label == "ok") + i).save(path)
    ds = tmp_path / "ds"
    assert C.run_cli(["data", "import", str(src), "--out", str(ds), "--workers", "1"]).code == 0
    return ds


SPLITS = {
    "val_test_leave_no_train": (["--val", "0.5", "--test", "0.49"], "leave 0.01 for training"),
    "no_val_no_test": (["--val", "0", "--test", "0"], "val empty"),
    "phash_too_large": (["--phash-threshold", "100000"], "0..64"),
    "phash_negative": (["--phash-threshold", "-5"], "0..64"),
    "seed_negative": (["--seed", "-1"], "seeds are integers >= 0"),
}


def test_split_settings_are_refused_or_warned(tmp_path):
    ds = _split_source(tmp_path)
    for name, (flags, words) in SPLITS.items():
        result = C.run_cli(["data", "split", str(ds), *flags])
        assert result.code == 2 and words in result.err, (name, result.err)
    ok = C.run_cli(["data", "split", str(ds)])
    assert ok.code == 0 and "fewer than" in ok.out  # 12 images per class: thin splits are warned about
