"""ELPV importer on the real installed elpv-dataset package (2,624 cells)."""

from __future__ import annotations

from collections import Counter

import pytest

from defectlens.data.importers import import_dataset
from defectlens.data.importers.sources import elpv_class

pytestmark = pytest.mark.slow  # decodes 2,624 images


@pytest.fixture(scope="module")
def elpv():
    return import_dataset("elpv", fmt="elpv")


def test_elpv_binary_counts_and_references(elpv) -> None:
    assert len(elpv.records) == 2624 and not elpv.info["skipped"]
    assert Counter(r.label for r in elpv.records) == {"functional": 1803, "defective": 821}
    assert elpv.info["positive_class"] == "defective"
    r = elpv.records[0]
    assert r.path == "pkg:elpv_dataset/data/images/cell0001.png" and elpv.resolve(r).is_file()
    assert r.meta["probability"] == 1.0 and r.meta["type"] == "mono"
    assert Counter(r.meta["type"] for r in elpv.records) == {"poly": 1550, "mono": 1074}


def test_elpv_four_classes() -> None:
    assert [elpv_class(p, 4) for p in (0.0, 1 / 3, 2 / 3, 1.0)] == ["p000", "p033", "p067", "p100"]
    m = import_dataset("elpv", fmt="elpv", elpv_classes=4)
    assert Counter(r.label for r in m.records) == {"p000": 1508, "p033": 295, "p067": 106, "p100": 715}
    assert m.info["positive_class"] is None
