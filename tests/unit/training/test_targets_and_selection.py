"""Soft targets from metadata (ELPV expert probability) and best-epoch ranking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from defectlens.core.errors import DefectlensError
from defectlens.data.dataset import CachedSplit
from defectlens.data.manifest import Record
from defectlens.training.targets import soft_targets


def _split(probs, metas=None):
    metas = metas or [{"probability": p} for p in probs]
    records = [
        Record(path=f"cell{i}.png", label="defective" if p >= 0.5 else "functional", meta=m)
        for i, (p, m) in enumerate(zip(probs, metas, strict=True))
    ]
    labels = torch.tensor([0 if r.label == "defective" else 1 for r in records])
    return CachedSplit(images=torch.zeros(len(records), 1, 4, 4, dtype=torch.uint8), labels=labels, records=records)


def test_targets_put_the_probability_on_the_positive_class():
    split = _split([0.0, 1 / 3, 2 / 3, 1.0])
    t = soft_targets(split, "probability", positive=0, num_classes=2)  # classes (defective, functional)
    expected = torch.tensor([[0.0, 1.0], [1 / 3, 2 / 3], [2 / 3, 1 / 3], [1.0, 0.0]])
    assert torch.allclose(t, expected)
    # the hard label is the argmax of the soft target wherever the experts were sure either way
    assert torch.equal(t.argmax(1)[[0, 3]], split.labels[[0, 3]])
    # cross-entropy accepts them as class-probability targets: an uncertain cell costs more when confident
    confident = torch.tensor([[5.0, -5.0]])
    assert F.cross_entropy(confident, t[1:2]) > F.cross_entropy(confident, t[3:4])


@pytest.mark.parametrize(
    ("meta", "match"), [({}, "numeric meta field 'probability'"), ({"probability": 1.5}, r"not a probability")]
)
def test_bad_metadata_names_the_file(meta, match):
    split = _split([0.0], [meta])
    with pytest.raises(DefectlensError, match=rf"cell0.png: .*{match}"):
        soft_targets(split, "probability", positive=0, num_classes=2)


def test_multiclass_is_refused():
    with pytest.raises(DefectlensError, match="needs a binary task"):
        soft_targets(_split([0.0]), "probability", positive=None, num_classes=3)


def test_saturated_validation_keeps_the_later_epoch_but_stops_early_only_on_gains():
    from defectlens.training.selection import rank_epoch

    assert rank_epoch(1.0, 1.0) == (True, False)  # a tie: newest checkpoint, no early-stopping reset
    assert rank_epoch(0.91, 0.90) == (True, True)
    assert rank_epoch(0.89, 0.90) == (False, False)
