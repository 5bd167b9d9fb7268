"""The gate's coverage figures by hand: coverage, flagged counts by reason kind, accuracy and defect recall
on the covered images."""

from __future__ import annotations

import numpy as np
import pytest

from defectlens.evaluation.coverage import gate_figures

# six images, defect = 1; the 2nd (two kinds) and the 4th are flagged. Covered: images 1, 3, 5, 6 with
# truth 1, 1, 0, 0 and decisions 1, 0, 1, 0: 2 of 4 right; of the 2 covered defects 1 caught.
Y = np.array([1, 1, 1, 0, 0, 0])
DECIDED = np.array([1, 0, 0, 0, 1, 0])
KINDS = [(), ("uniform", "under_exposed"), (), ("out_of_distribution",), (), ()]


def test_binary_figures_by_hand():
    g = gate_figures(Y, DECIDED, KINDS, positive_index=1)
    assert g == {
        "images": 6,
        "flagged": 2,
        "covered": 4,
        "coverage": pytest.approx(4 / 6),
        "reasons": {"uniform": 1, "under_exposed": 1, "out_of_distribution": 1},
        "accuracy_covered": 0.5,
        "defects_covered": 2,
        "defect_recall_covered": 0.5,
    }


def test_multiclass_has_no_recall_and_an_empty_split_no_shares():
    g = gate_figures(Y, DECIDED, KINDS, positive_index=None)
    assert "defect_recall_covered" not in g and g["accuracy_covered"] == 0.5
    empty = gate_figures(np.array([], int), np.array([], int), [], positive_index=1)
    assert (empty["coverage"], empty["accuracy_covered"], empty["defect_recall_covered"]) == (None, None, None)


def test_everything_flagged_leaves_nothing_to_measure():
    g = gate_figures(Y[:2], DECIDED[:2], [("uniform",), ("noisy",)], positive_index=1)
    assert (g["coverage"], g["accuracy_covered"], g["defect_recall_covered"]) == (0.0, None, None)
    assert g["reasons"] == {"uniform": 1, "noisy": 1}
