"""Import the real casting and NEU-DET data from ../shared/datasets and check the published counts."""

from __future__ import annotations

from collections import Counter

import pytest

from defectlens.data.importers import import_dataset
from defectlens.data.split import split_manifest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_casting_train_split(shared_datasets) -> None:
    m = import_dataset(shared_datasets / "casting", fmt="casting")
    assert len(m.records) == 6633
    # The shared copy's checksum file is reported, not silently ignored.
    assert m.info["skipped"] == [{"path": "MANIFEST.sha256", "reason": "outside the train/val/test folders"}]
    assert Counter(r.label for r in m.records) == {"def_front": 3758, "ok_front": 2875}
    assert {r.split for r in m.records} == {"train"} and m.info["positive_class"] == "def_front"
    assert {(r.width, r.height, r.mode) for r in m.records} == {(300, 300, "RGB")}
    assert len({r.sha256 for r in m.records}) == 6633  # SOURCES.md: no exact duplicates
    s = split_manifest(m, seed=0)
    rep = s.info["split"]["report"]
    # The default threshold must not chain distinct impellers into big groups (see dedup.py).
    assert max(rep["largest_groups"]) <= 20
    assert sum(Counter(r.split for r in s.records).values()) == 6633


def test_neu_det(shared_datasets) -> None:
    m = import_dataset(shared_datasets / "neu-det", fmt="neu-det")
    assert len(m.records) == 1620 and not m.info["skipped"]
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
