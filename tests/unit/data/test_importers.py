"""Importers for the folder, casting and CSV layouts, class mapping and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.data.importers import import_dataset
from defectlens.data.manifest import Manifest
from tests.unit.data.conftest import write_image


def _counts(m: Manifest) -> dict[str, dict[str, int]]:
    return m.counts()


def test_folder_class_per_subfolder(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / "src" / "ok" / f"o{i}.png", i)
        write_image(tmp_path / "src" / "scratch" / "nested" / f"s{i}.png", 10 + i)
    m = import_dataset(tmp_path / "src", fmt="folder")
    assert m.classes == ["ok", "scratch"]
    assert _counts(m) == {"": {"ok": 3, "scratch": 3}}
    r = next(r for r in m.records if r.label == "scratch")
    assert r.path.startswith("scratch/nested/") and m.resolve(r).is_file()
    assert len(r.sha256) == 64 and len(r.meta["phash"]) == 64
    assert (r.width, r.height, r.mode) == (24, 24, "L")
    assert m.info["root"] == str((tmp_path / "src").resolve())
    assert m.info["positive_class"] is None  # neither name reads as a defect
    assert any("--positive" in w for w in m.info["warnings"])
    assert import_dataset(tmp_path / "src", fmt="folder", positive="scratch").info["positive_class"] == "scratch"


def test_folder_with_split_folders_keeps_splits(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("val", 1), ("test", 2)):
        for c in ("good", "defect"):
            for i in range(n):
                write_image(tmp_path / split / c / f"{c}{i}.png", hash((split, c, i)) % 10_000)
    (tmp_path / "README.txt").write_text("hello")
    m = import_dataset(tmp_path, fmt="folder")
    assert _counts(m) == {
        "train": {"good": 4, "defect": 4},
        "val": {"good": 1, "defect": 1},
        "test": {"good": 2, "defect": 2},
    }
    assert m.info["positive_class"] == "defect"
    assert [s["path"] for s in m.info["skipped"]] == ["README.txt"]


def _casting(root: Path, splits=("train", "test"), n: int = 3) -> Path:
    for split in splits:
        for c in ("def_front", "ok_front"):
            for i in range(n):
                write_image(root / split / c / f"cast_{c[:3]}_0_{i}.jpeg", hash((split, c, i)) % 10_000, mode="RGB")
    return root


def test_casting_layout_official_test_and_train_only(tmp_path: Path) -> None:
    m = import_dataset(_casting(tmp_path / "kaggle" / "casting_data" / "casting_data"), fmt="casting")
    assert m.classes == ["def_front", "ok_front"] and m.info["positive_class"] == "def_front"
    assert _counts(m) == {"train": {"def_front": 3, "ok_front": 3}, "test": {"def_front": 3, "ok_front": 3}}
    # The Kaggle zip's nesting is walked from the outer folder too.
    assert len(import_dataset(tmp_path / "kaggle", fmt="casting").records) == 12
    only_train = import_dataset(_casting(tmp_path / "shared", splits=("train",)), fmt="casting")
    assert set(_counts(only_train)) == {"train"}
    with pytest.raises(DefectlensError, match="train/ or test/"):
        import_dataset(tmp_path / "kaggle" / "casting_data" / "casting_data" / "train", fmt="casting")


def test_csv_relative_absolute_split_and_missing(tmp_path: Path) -> None:
    a = write_image(tmp_path / "imgs" / "a.png", 1)
    b = write_image(tmp_path / "elsewhere" / "b.png", 2)
    csv = tmp_path / "imgs" / "labels.csv"
    csv.write_text(f"path,label,split\na.png,ok,train\n{b},ng,test\nmissing.png,ng,\nc.png,,\n")
    refused = import_dataset(csv, fmt="csv")  # b lies outside the CSV's folder: refused by default
    assert {s["path"]: s["reason"] for s in refused.info["skipped"]}[str(b)].endswith("--allow-outside-root to read it")
    m = import_dataset(csv, fmt="csv", allow_outside_root=True)
    assert {r.path: (r.label, r.split) for r in m.records} == {"a.png": ("ok", "train"), str(b): ("ng", "test")}
    assert m.resolve(m.records[0]) == a
    assert m.info["positive_class"] == "ng"
    reasons = {s["path"]: s["reason"] for s in m.info["skipped"]}
    assert reasons["missing.png"] == "file not found" and "empty label" in reasons["c.png"]
    csv.write_text("path,label,Camera\na.png,ok,cam-2\n")  # other columns are per-image metadata
    assert [r.meta.get("camera") for r in import_dataset(csv, fmt="csv").records] == ["cam-2"]
    csv.write_text("file,class\na.png,ok\n")
    with pytest.raises(DefectlensError, match="path,label"):
        import_dataset(csv, fmt="csv")
    csv.write_text("path,label,split\na.png,ok,holdout\n")
    with pytest.raises(DefectlensError, match="line 2"):
        import_dataset(csv, fmt="csv")


def test_mapping_scratches_vs_rest(tmp_path: Path) -> None:
    for i, c in enumerate(("scratches", "patches", "crazing")):
        write_image(tmp_path / c / f"{c}_1.png", i)
    m = import_dataset(tmp_path, fmt="folder", mapping={"scratches": "defect", "*": "ok", "nothere": "x"})
    assert m.classes == ["defect", "ok"] and m.info["positive_class"] == "defect"
    assert {r.meta["source_label"] for r in m.records if r.label == "ok"} == {"patches", "crazing"}
    assert any("nothere" in w for w in m.info["warnings"])


def test_bad_files_are_reported_never_dropped(tmp_path: Path, broken_files: dict[str, Path]) -> None:
    src = tmp_path / "src"
    shutil.move(str(tmp_path / "bad"), src / "mixed")
    write_image(src / "ok" / "fine.png", 7)
    m = import_dataset(src, fmt="folder")
    skipped = {s["path"]: s["reason"] for s in m.info["skipped"]}
    kept = {r.path: r.mode for r in m.records}
    found = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    assert set(skipped) | set(kept) == found and not set(skipped) & set(kept)
    assert "empty" in skipped["mixed/zero.png"]
    assert "truncated" in skipped["mixed/truncated.jpg"]
    assert "not an image" in skipped["mixed/notes.png"]
    assert "system file" in skipped["mixed/Thumbs.db"]
    assert kept["mixed/deep.png"].startswith("I")
    assert kept["mixed/cmyk.jpg"] == "CMYK" and kept["mixed/palette.png"] == "P" and kept["mixed/rgba.png"] == "RGBA"
    warned = " ".join(m.info["warnings"])
    for mode in ("CMYK", "RGBA", "mode P"):
        assert mode in warned


def test_process_pool_matches_in_process(tmp_path: Path) -> None:
    for i in range(20):  # above the pool threshold
        write_image(tmp_path / ("a" if i % 2 else "b") / f"{i}.png", i)
    pooled = import_dataset(tmp_path, fmt="folder", workers=2)
    serial = import_dataset(tmp_path, fmt="folder", workers=1)
    assert pooled.records == serial.records


def test_missing_empty_and_unknown_sources(tmp_path: Path) -> None:
    with pytest.raises(DefectlensError, match="not found"):
        import_dataset(tmp_path / "nope", fmt="folder")
    (tmp_path / "empty" / "ok").mkdir(parents=True)
    with pytest.raises(DefectlensError, match="no image files"):
        import_dataset(tmp_path / "empty", fmt="folder")
    (tmp_path / "empty" / "ok" / "x.png").write_bytes(b"")
    with pytest.raises(DefectlensError, match="no usable image"):
        import_dataset(tmp_path / "empty", fmt="folder")
    with pytest.raises(DefectlensError, match="unknown format"):
        import_dataset(tmp_path, fmt="voc")
