"""Operating-threshold policies on hand cases."""

from __future__ import annotations

import numpy as np
import pytest

from defectlens.errors import DefectlensError
from defectlens.evaluation.threshold import choose_threshold, threshold_sweep

Y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
P = np.array([0.05, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9])


def test_sweep_counts():
    rows = {r["threshold"]: r for r in threshold_sweep(Y, P, cost_fn=10, cost_fp=1)}
    r = rows[0.6]
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (3, 1, 1, 3)
    assert r["cost"] == pytest.approx((10 * 1 + 1) / 8)


def test_recall_target_is_highest_threshold_reaching_it():
    c = choose_threshold(Y, P, method="recall", target_recall=1.0)
    assert c.threshold == pytest.approx(0.35) and "recall" in c.reason


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
