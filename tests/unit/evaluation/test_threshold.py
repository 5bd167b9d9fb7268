"""Operating-threshold policies on hand cases."""

from __future__ import annotations

import numpy as np
import pytest

from defectlens.core.errors import DefectlensError
from defectlens.evaluation.threshold import choose_threshold, threshold_sweep

Y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
P = np.array([0.05, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9])


def test_sweep_counts():
    rows = {round(r["threshold"], 6): r for r in threshold_sweep(Y, P, cost_fn=10, cost_fp=1)}
    r = rows[0.475]  # halfway between the scores 0.35 and 0.6: 0.6 and above are called defects
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (3, 1, 1, 3)
    assert r["cost"] == pytest.approx((10 * 1 + 1) / 8)


def test_recall_target_is_highest_threshold_reaching_it():
    c = choose_threshold(Y, P, method="recall", target_recall=1.0)
    # the lowest defect scores 0.35: the threshold sits halfway to the next lower score, 0.3
    assert c.threshold == pytest.approx(0.325) and "recall" in c.reason


def test_clean_separation_keeps_a_margin_on_both_sides():
    # every OK part below 0.55, every defect at 0.95 or above: any threshold in (0.55, 0.95] is perfect,
    # and the chosen one must not sit on the lowest defect's score
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.3, 0.55, 0.95, 0.97, 0.99])
    for method in ("f1", "cost"):
        assert choose_threshold(y, p, method=method).threshold == pytest.approx(0.75)
    assert choose_threshold(y, p, method="recall", target_recall=1.0).threshold == pytest.approx(0.75)


def test_cost_weighs_missed_defects():
    # catching the defect scored 0.35 costs one extra false alarm (0.6): worth it only when misses are dear
    cheap_miss = choose_threshold(Y, P, method="cost", cost_fn=1, cost_fp=10)
    dear_miss = choose_threshold(Y, P, method="cost", cost_fn=10, cost_fp=1)
    assert dear_miss.threshold <= 0.35 < cheap_miss.threshold


def test_f1_and_no_defects():
    assert choose_threshold(Y, P, method="f1").sweep
    with pytest.raises(DefectlensError, match="no defect"):
        choose_threshold(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(DefectlensError, match="unknown threshold method"):
        choose_threshold(Y, P, method="magic")
