"""Import the real casting and NEU-DET data from ../shared/datasets and check the published counts."""

from __future__ import annotations

from collections import Counter

import pytest

from defectlens.data.importers import import_dataset
from defectlens.data.split import split_manifest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_casting_official_splits(shared_datasets) -> None:
    m = import_dataset(shared_datasets / "casting", fmt="casting")
    assert len(m.records) == 7348
    # The shared copy's checksum file is reported, not silently ignored.
    assert m.info["skipped"] == [{"path": "MANIFEST.sha256", "reason": "outside the train/val/test folders"}]
    assert Counter((r.split, r.label) for r in m.records) == {
        ("train", "def_front"): 3758,
        ("train", "ok_front"): 2875,
        ("test", "def_front"): 453,
        ("test", "ok_front"): 262,
    }
    assert m.info["positive_class"] == "def_front"
    assert {(r.width, r.height, r.mode) for r in m.records} == {(300, 300, "RGB")}
    # SOURCES.md: no duplicate inside train; 64 test/ok_front files are byte-identical to train files.
    # That is exactly what the leakage guard exists to catch, and the import must say so.
    assert len({r.sha256 for r in m.records}) == 7348 - 64
    assert len({r.sha256 for r in m.records if r.split == "train"}) == 6633
    leak = m.info["leakage"]
    assert leak["sets"] == 64 and leak["images"] == 64 and leak["by_splits"] == {"test/train": 64}
    assert any(w.startswith("leakage in the source's own splits: 64 set(s)") for w in m.info["warnings"])
    s = split_manifest(m, seed=0)
    rep = s.info["split"]["report"]
    # The official test split is kept whole; the 64 copies are reported across splits, not moved.
    assert Counter(r.split for r in s.records)["test"] == 715
    assert rep["cross_split_groups"] >= 64
    # The default threshold must not chain distinct impellers into big groups (see dedup.py).
    assert max(rep["largest_groups"]) <= 20
    assert sum(Counter(r.split for r in s.records).values()) == 7348


def test_neu_det(shared_datasets) -> None:
    m = import_dataset(shared_datasets / "neu-det", fmt="neu-det")
    assert len(m.records) == 1620 and not m.info["skipped"]
    assert m.info["leakage"]["sets"] == 0  # the one byte-identical pair has no split of its own yet
    assert Counter(r.meta["file_class"] for r in m.records) == dict.fromkeys(
        ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"], 270
    )
    assert sum(len(r.meta["boxes"]) for r in m.records) == 3743
    neu = m.info["neu"]
    assert len(neu["xml_with_other_classes"]) == 111
    assert not neu["images_without_xml"] and not neu["xml_without_image"] and not neu["bad_xml"]
    s = split_manifest(m, seed=0)
    group = {r.path: (r.group, r.split) for r in s.records}
    assert group["IMAGES/patches_101.jpg"] == group["IMAGES/patches_105.jpg"]
    assert s.info["split"]["report"]["duplicate_groups"] == 1
