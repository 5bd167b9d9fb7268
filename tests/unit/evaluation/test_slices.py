"""Results by image attribute: which attributes are grouped, and the counts per value."""

from __future__ import annotations

import numpy as np
import pytest

from defectlens.data.manifest import Record
from defectlens.evaluation.slices import slice_keys, slice_table


def _records(meta: list[dict], sizes=None) -> list[Record]:
    sizes = sizes or [(300, 300)] * len(meta)
    return [
        Record(path=f"{i}.png", label="x", width=w, height=h, mode="L", meta=m)
        for i, (m, (w, h)) in enumerate(zip(meta, sizes, strict=True))
    ]


def test_keys_are_scalar_attributes_with_a_few_values():
    meta = [{"type": "mono" if i % 2 else "poly", "line": 3, "id": f"c{i}", "boxes": [[0, 1]]} for i in range(20)]
    assert slice_keys(_records(meta)) == ["type"]  # one value, 20 values and a list are not groups
    mixed = _records(meta, sizes=[(300, 300)] * 10 + [(200, 200)] * 10)
    assert slice_keys(mixed) == ["type", "size"]
    assert slice_keys(_records(meta), max_values=30) == ["id", "type"]


def test_table_counts_errors_and_missed_defects_per_value():
    # ELPV-like: the experts' probability as an attribute; class 0 = defective
    probability = [0.0, 0.0, 0.0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0, 1.0, 1.0]
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    pred = np.array([1, 0, 1, 0, 1, 1, 1, 0, 1, 0])
    table = slice_table(
        _records([{"probability": p} for p in probability]),
        y,
        pred,
        class_names=["defective", "functional"],
        positive_index=0,
    )
    rows = {r["value"]: r for r in table["probability"]}
    assert list(rows) == ["0", "0.333", "0.667", "1"]  # numeric order, 3 significant digits
    assert rows["0"] == {
        "value": "0",
        "n": 3,
        "errors": 1,
        "accuracy": pytest.approx(2 / 3),
        "labels": ["functional"],
        "defects": 0,
        "missed_defects": 0,
    }
    assert (rows["0.667"]["errors"], rows["0.667"]["defects"], rows["0.667"]["missed_defects"]) == (2, 2, 2)
    assert (rows["1"]["errors"], rows["1"]["missed_defects"], rows["1"]["accuracy"]) == (
        1,
        1,
        pytest.approx(2 / 3),
    )
    assert sum(r["errors"] for r in rows.values()) == int((y != pred).sum())


def test_multiclass_rows_have_no_defect_counts_and_lengths_must_match():
    assert [
        r["value"]
        for r in slice_table(_records([{"n": 10}, {"n": 9}]), np.zeros(2, int), np.zeros(2, int), class_names=["a"])[
            "n"
        ]
    ] == ["9", "10"]
    recs = _records([{"shift": s} for s in "ABAB"])
    table = slice_table(recs, np.array([0, 1, 2, 0]), np.array([0, 2, 2, 0]), class_names=["a", "b", "c"])
    assert [(r["value"], r["errors"]) for r in table["shift"]] == [("A", 0), ("B", 1)]
    assert "defects" not in table["shift"][0]
    with pytest.raises(ValueError, match="4 records but 3 labels"):
        slice_table(recs, np.array([0, 1, 2]), np.array([0, 1, 2]), class_names=["a", "b", "c"])
