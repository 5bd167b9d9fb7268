"""compute_metrics on hand-computed cases, against scikit-learn, and on degenerate inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    matthews_corrcoef,
    roc_auc_score,
    top_k_accuracy_score,
)

from defectlens.core.errors import DefectlensError
from defectlens.evaluation.metrics import compute_metrics, reliability_bins

NAMES = ["ok", "defect"]


def binary_probs(p_pos):
    p = np.asarray(p_pos, dtype=np.float64)
    return np.stack([1 - p, p], axis=1)


def strict_json(d):
    return json.dumps(d, allow_nan=False)  # raises on NaN / inf


def test_binary_hand_case():
    y = np.array([0, 0, 1, 1, 1])
    probs = binary_probs([0.1, 0.6, 0.7, 0.4, 0.9])  # at 0.5: pred 0 1 1 0 1 -> TP 2, FP 1, FN 1, TN 1
    m = compute_metrics(y, probs, class_names=NAMES, positive_index=1, threshold=0.5, bootstrap=0)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["defect_recall"] == pytest.approx(2 / 3)
    assert m["defect_precision"] == pytest.approx(2 / 3)
    assert m["false_alarm_rate"] == pytest.approx(1 / 2)
    assert m["expected_cost"] == pytest.approx((10 * 1 + 1 * 1) / 5)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert m["per_class"][1] == {
        "class": "defect",
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(2 / 3),
        "support": 3,
    }
    # ROC-AUC by hand: 6 (neg, pos) pairs, positive ranked higher in 5 -> 5/6
    assert m["roc_auc"] == pytest.approx(5 / 6)
    strict_json(m)


def test_threshold_moves_decisions_and_cost():
    y = np.array([0, 0, 1, 1, 1])
    probs = binary_probs([0.1, 0.6, 0.7, 0.4, 0.9])
    m = compute_metrics(
        y, probs, class_names=NAMES, positive_index=1, threshold=0.65, cost_fn=5, cost_fp=2, bootstrap=0
    )
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 0, 1, 2)
    assert m["expected_cost"] == pytest.approx(5 / 5)
    assert m["threshold"] == 0.65


def test_binary_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.35 * y + rng.uniform(0, 0.65, 200), 0.001, 0.999)
    m = compute_metrics(y, binary_probs(p), class_names=NAMES, positive_index=1, threshold=0.5, bootstrap=0)
    pred = (p >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert m["nll"] == pytest.approx(log_loss(y, binary_probs(p)))


def test_multiclass_matches_sklearn():
    rng = np.random.default_rng(2)
    k, n = 4, 300
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = compute_metrics(y, probs, class_names=list("abcd"), bootstrap=0)
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["nll"] == pytest.approx(log_loss(y, probs))
    assert m["top_k_accuracy"]["top2"] == pytest.approx(top_k_accuracy_score(y, probs, k=2))
    assert m["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    assert m["brier"] == pytest.approx(np.mean(np.sum((probs - np.eye(k)[y]) ** 2, axis=1)))
    assert m["expected_cost"] is None and "defect_recall" not in m
    assert m["threshold"] is None


def test_ece_mce_hand_case():
    # confidences 0.9 (one right, one wrong) and 0.55 (both right): gaps 0.4 and 0.45
    y = np.array([1, 0, 1, 1])
    probs = binary_probs([0.9, 0.9, 0.55, 0.55])
    rel = reliability_bins(y, probs)
    assert rel["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.45)
    assert rel["mce"] == pytest.approx(0.45)
    counts = [b["count"] for b in rel["bins"]]
    assert len(counts) == 15 and sum(counts) == 4 and counts[13] == 2 and counts[8] == 2


def test_one_class_only_gives_nulls_with_notes():
    y = np.ones(6, dtype=int)
    m = compute_metrics(y, binary_probs(np.linspace(0.2, 0.9, 6)), class_names=NAMES, positive_index=1, threshold=0.5)
    assert m["roc_auc"] is None and m["pr_auc"] is None and m["false_alarm_rate"] is None
    assert any("ROC-AUC" in n for n in m["notes"]) and any("false-alarm" in n for n in m["notes"])
    strict_json(m)
    no_defects = compute_metrics(
        np.zeros(4, int), binary_probs([0.1, 0.2, 0.3, 0.6]), class_names=NAMES, positive_index=1, threshold=0.5
    )
    assert no_defects["defect_recall"] is None and no_defects["ci"]["defect_recall"] is None
    strict_json(no_defects)


def test_all_correct_and_all_wrong():
    y = np.array([0, 1, 0, 1])
    right = compute_metrics(y, binary_probs([0.1, 0.9, 0.2, 0.8]), class_names=NAMES, positive_index=1, threshold=0.5)
    assert right["accuracy"] == 1.0 and right["mcc"] == 1.0
    # 4 of 4 right says little: the exact interval's lower end is 0.025^(1/4), not 1
    assert right["ci"]["accuracy"] == pytest.approx([0.025**0.25, 1.0])
    wrong = compute_metrics(y, binary_probs([0.9, 0.1, 0.8, 0.2]), class_names=NAMES, positive_index=1, threshold=0.5)
    assert wrong["accuracy"] == 0.0 and wrong["mcc"] == -1.0 and wrong["defect_recall"] == 0.0
    strict_json(right)
    strict_json(wrong)


@pytest.mark.parametrize(
    ("y", "probs", "match"),
    [
        (np.array([], dtype=int), np.zeros((0, 2)), "empty"),
        (np.array([0, 1]), np.zeros((2, 3)), "shape"),
        (np.array([0, 2]), binary_probs([0.1, 0.2]), "class indices"),
        (np.array([0, 1]), binary_probs([np.nan, 0.2]), "NaN"),
    ],
)
def test_bad_input_raises(y, probs, match):
    with pytest.raises(DefectlensError, match=match):
        compute_metrics(y, probs, class_names=NAMES)


def test_bootstrap_contains_point_is_seeded_and_matches_a_loop():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 120)
    probs = rng.dirichlet(np.ones(3), 120) * 0.5 + 0.5 * np.eye(3)[y] * rng.uniform(0, 1, (120, 1))
    probs /= probs.sum(1, keepdims=True)
    m1 = compute_metrics(y, probs, class_names=list("abc"), bootstrap=200, seed=7)
    m2 = compute_metrics(y, probs, class_names=list("abc"), bootstrap=200, seed=7)
    m3 = compute_metrics(y, probs, class_names=list("abc"), bootstrap=200, seed=8)
    assert m1["ci"] == m2["ci"] and m1["ci"] != m3["ci"]
    for key in ("accuracy", "macro_f1"):
        lo, hi = m1["ci"][key]
        assert lo <= m1[key] <= hi and lo < hi
    # the vectorised resampling equals scikit-learn run on each resample with the same indices
    idx = np.random.default_rng(7).integers(0, 120, size=(200, 120))
    pred = probs.argmax(1)
    f1s = [f1_score(y[i], pred[i], average="macro", zero_division=0) for i in idx]
    assert m1["ci"]["macro_f1"] == pytest.approx(list(np.percentile(f1s, [2.5, 97.5])))


def test_binary_bootstrap_defect_recall():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 150)
    p = np.clip(0.4 * y + rng.uniform(0, 0.6, 150), 0, 1)
    m = compute_metrics(y, binary_probs(p), class_names=NAMES, positive_index=1, threshold=0.5, bootstrap=300)
    lo, hi = m["ci"]["defect_recall"]
    assert lo <= m["defect_recall"] <= hi


def test_proportion_intervals_are_exact_binomial_and_honest_at_zero_errors():
    from scipy.stats import binomtest

    y = np.array([1] * 453 + [0] * 262)  # the official casting test split, every part decided right
    p = np.where(y == 1, 0.9, 0.1)
    m = compute_metrics(y, binary_probs(p), class_names=NAMES, positive_index=1, threshold=0.5, bootstrap=200)
    assert m["accuracy"] == 1.0 and m["ci"]["accuracy"][1] == 1.0
    assert m["ci"]["accuracy"][0] == pytest.approx(0.025 ** (1 / 715))  # about 0.9949: not [1, 1]
    assert m["ci"]["defect_recall"][0] == pytest.approx(0.025 ** (1 / 453))
    assert m["ci_method"]["accuracy"].startswith("Clopper-Pearson")
    # with errors it is scipy's exact interval of the counts
    wrong = p.copy()
    wrong[:7] = 0.2  # 7 defects missed
    m = compute_metrics(y, binary_probs(wrong), class_names=NAMES, positive_index=1, threshold=0.5, bootstrap=200)
    ref = binomtest(446, 453).proportion_ci(0.95, method="exact")
    assert m["ci"]["defect_recall"] == pytest.approx([ref.low, ref.high])
    ref = binomtest(708, 715).proportion_ci(0.95, method="exact")
    assert m["ci"]["accuracy"] == pytest.approx([ref.low, ref.high])
