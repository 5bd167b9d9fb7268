"""Manifest round trip, validation and path resolution."""

from __future__ import annotations

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.data.manifest import Manifest, Record, resolve_path


def test_round_trip(tmp_path):
    records = [
        Record(path="a/1.png", label="ok", split="train", sha256="x", width=3, height=4, mode="L", group="g1"),
        Record(path="b/2.png", label="defect", split="test", meta={"boxes": [["scratch", 1, 2, 3, 4]]}),
    ]
    m = Manifest(records=records, info={"classes": ["defect", "ok"], "root": str(tmp_path)})
    m.write(tmp_path / "ds")
    back = Manifest.read(tmp_path / "ds")
    assert back.records == records
    assert back.classes == ["defect", "ok"]
    assert back.counts() == {"train": {"ok": 1}, "test": {"defect": 1}}
    assert back.resolve(records[0]) == tmp_path / "a/1.png"
    assert back.label_index(records[1]) == 0


def test_read_rejects_non_dataset_folder(tmp_path):
    with pytest.raises(DefectlensError, match="not a defectlens dataset"):
        Manifest.read(tmp_path)


def test_read_rejects_unknown_label(tmp_path):
    Manifest(records=[Record(path="x.png", label="bad")], info={"classes": ["ok"]}).write(tmp_path)
    with pytest.raises(DefectlensError, match=r"not in dataset\.json classes"):
        Manifest.read(tmp_path)


def test_package_reference_resolves_into_installed_package(tmp_path):
    path = resolve_path("pkg:elpv_dataset/data/labels.csv", tmp_path)
    assert path.is_file()
    with pytest.raises(DefectlensError, match="not installed"):
        resolve_path("pkg:no_such_package_xyz/a.png", tmp_path)
