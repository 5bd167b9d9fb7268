"""compute_metrics, its parts and its refusals, on cases small enough to work out by hand (#34).

Every expected number is worked out in a comment beside it, or taken from scipy or scikit-learn
where that library's function is the metric's definition; none comes from the code under test.
The binary case is run with the defect class second and first (every dataset we ship sorts it
first); a three-class case, a class absent from the truth, one class only, ties in the ranking
scores, and probabilities on the reliability bins' edges pin down the rest.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import brier_score_loss, f1_score

from defectlens.core.errors import DefectlensError
from defectlens.evaluation.metrics import (
    CI_METHODS,
    _num,
    brier,
    compute_metrics,
    exact_interval,
    reliability_bins,
)

NO_COST = "expected cost per part needs a binary task with a defect class; null"
ONE_CLASS = "balanced accuracy, ROC-AUC and PR-AUC need at least two classes in the labels; null"
NO_DEFECTS = "no defect samples in this split: defect recall is null"
NO_DEFECT_PREDICTED = "nothing predicted as defect: defect precision is null"
NO_GOOD = "no good (non-defect) samples in this split: false-alarm rate is null"

#: the keys of every result, and those a binary task with a defect class and a bootstrap add
COMMON_KEYS = {"n", "class_names", "positive_class", "threshold", "notes", "confusion_matrix", "per_class", "ci"}
COMMON_KEYS |= {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "mcc", "roc_auc", "pr_auc"}
COMMON_KEYS |= {"brier", "nll", "ece", "mce", "expected_cost"}
DEFECT_KEYS = {"tp", "fp", "fn", "tn", "defect_recall", "defect_precision", "false_alarm_rate", "cost_fn", "cost_fp"}
CI_KEYS = {"ci_level", "bootstrap", "ci_method"}


def strict_json(d):
    return json.dumps(d, allow_nan=False)  # raises on NaN, inf and numpy scalars that are not floats


def no_warnings(**kwargs):
    """compute_metrics with every warning an error: undefined metrics are said in ``notes``, not warned."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return compute_metrics(**kwargs)


def assert_scalars(m, expected):
    for key, value in expected.items():
        if value is None or isinstance(value, (str, list, dict)):
            assert m[key] == value, key
        else:
            assert m[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


# --- binary: 3 defects, 4 good parts; the defect probability s of each -------------------------------------------
#
#   part  truth   s (P defect)  decision at 0.5   argmax right?  confidence (max prob)
#   D1    defect  0.90          defect  (TP)      yes            0.90
#   D2    defect  0.65          defect  (TP)      yes            0.65
#   D3    defect  0.30          good    (FN)      no             0.70
#   G1    good    0.65          defect  (FP)      no             0.65
#   G2    good    0.35          good    (TN)      yes            0.65
#   G3    good    0.30          good    (TN)      yes            0.70
#   G4    good    0.10          good    (TN)      yes            0.90
#
# TP 2, FN 1, FP 1, TN 3; accuracy 5/7. Defect: precision 2/3, recall 2/3, F1 2/3, support 3. Good: precision
# TN/(TN+FN) = 3/4, recall 3/4, F1 3/4, support 4. Balanced accuracy and macro F1 (2/3 + 3/4)/2 = 17/24; weighted
# F1 (3 * 2/3 + 4 * 3/4)/7 = 5/7. MCC (TP*TN - FP*FN)/sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (6 - 1)/sqrt(3*3*4*4) = 5/12.
# ROC-AUC over the 12 (defect, good) pairs, a tie counting 1/2: D1 beats all 4; D2 beats 3 and ties G1: 3.5;
# D3 beats G4 and ties G3: 1.5 -> 9/12. Average precision, thresholds top down (tied scores are one threshold):
# 0.9 -> P 1, R 1/3; 0.65 -> TP 2 FP 1, P 2/3, R 2/3; 0.35 -> R unchanged; 0.3 -> TP 3 FP 3, P 1/2, R 1
# -> 1/3 * (1 + 2/3 + 1/2) = 13/18. Brier of s: defects (1-s)^2 = .01 + .1225 + .49, good s^2 = .4225 + .1225 + .09
# + .01 -> 1.2675/7. NLL: -(ln .9 + ln .65 + ln .3 + ln .35 + ln .65 + ln .7 + ln .9)/7.
# Reliability, 15 bins (b/15, (b+1)/15]: 0.65 -> bin 9 (3 parts, 2 right: gap |2/3 - .65| = 1/60), 0.7 -> bin 10
# (2 parts, 1 right: gap .2), 0.9 -> bin 13 (2 right: gap .1). ECE 3/7 * 1/60 + 2/7 * .2 + 2/7 * .1 = 13/140;
# MCE .2. Expected cost (10 * FN + 1 * FP)/7 = 11/7; false-alarm rate FP/(FP+TN) = 1/4.
S = [0.9, 0.65, 0.3, 0.65, 0.35, 0.3, 0.1]
IS_DEFECT = [True, True, True, False, False, False, False]
BINARY = {
    "n": 7,
    "accuracy": 5 / 7,
    "balanced_accuracy": 17 / 24,
    "macro_f1": 17 / 24,
    "weighted_f1": 5 / 7,
    "mcc": 5 / 12,
    "roc_auc": 9 / 12,
    "pr_auc": 13 / 18,
    "brier": 1.2675 / 7,
    "nll": -(2 * math.log(0.9) + 2 * math.log(0.65) + math.log(0.3) + math.log(0.35) + math.log(0.7)) / 7,
    "ece": 13 / 140,
    "mce": 0.2,
    "tp": 2,
    "fp": 1,
    "fn": 1,
    "tn": 3,
    "defect_recall": 2 / 3,
    "defect_precision": 2 / 3,
    "false_alarm_rate": 1 / 4,
    "expected_cost": 11 / 7,
    "cost_fn": 10.0,
    "cost_fp": 1.0,
    "threshold": 0.5,
    "positive_class": "defect",
    "notes": [],
}
DEFECT_ROW = {"class": "defect", "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
GOOD_ROW = {"class": "good", "precision": 3 / 4, "recall": 3 / 4, "f1": 3 / 4, "support": 4}


def binary_case(defect_index):
    """The seven parts above with the defect class at ``defect_index`` (0: sorted first, as our datasets are)."""
    names = ["defect", "good"] if defect_index == 0 else ["good", "defect"]
    y = np.where(IS_DEFECT, defect_index, 1 - defect_index)
    s = np.asarray(S)
    probs = np.empty((7, 2))
    probs[:, defect_index], probs[:, 1 - defect_index] = s, 1 - s
    return y, probs, names


def approx_rows(rows):
    return [{k: (pytest.approx(v) if isinstance(v, float) else v) for k, v in row.items()} for row in rows]


@pytest.mark.parametrize("defect_index", [0, 1])
def test_binary_every_metric_by_hand(defect_index):
    y, probs, names = binary_case(defect_index)
    m = no_warnings(y_true=y, probs=probs, class_names=names, positive_index=defect_index, threshold=0.5, bootstrap=0)
    assert set(m) == COMMON_KEYS | DEFECT_KEYS
    assert m["class_names"] == names
    assert_scalars(m, BINARY)
    assert m["ci"] == {}
    if defect_index == 0:  # rows are the truth, columns the decision, in class order
        assert m["confusion_matrix"] == [[2, 1], [1, 3]]
        assert m["per_class"] == approx_rows([DEFECT_ROW, GOOD_ROW])
    else:
        assert m["confusion_matrix"] == [[3, 1], [1, 2]]
        assert m["per_class"] == approx_rows([GOOD_ROW, DEFECT_ROW])
    strict_json(m)


def test_binary_brier_is_the_defect_columns_score():
    # scikit-learn's brier_score_loss of the defect probability is the definition; the good column's score agrees
    # only up to rounding (1 - (1 - 0.1) is not 0.1 in floating point), so the comparison is exact
    y = np.array([1, 1, 0])  # defect first: two good parts, one defect
    s = np.array([0.1, 0.2, 0.8])
    probs = np.stack([s, 1 - s], axis=1)
    m = compute_metrics(y, probs, class_names=["defect", "good"], positive_index=0, threshold=0.5, bootstrap=0)
    defect_score = brier_score_loss([0, 0, 1], s)
    assert defect_score != brier_score_loss([1, 1, 0], 1 - s)
    assert m["brier"] == defect_score
    assert m["brier"] == pytest.approx((0.1**2 + 0.2**2 + 0.2**2) / 3)


def test_brier_direct_on_each_column_and_multiclass():
    # rows that need not sum to 1 show which column is scored: defect first -> column 0
    y = np.array([0, 1])
    scores = np.array([[0.6, 0.1], [0.2, 0.3]])
    assert brier(y, scores, positive_index=0) == pytest.approx(((1 - 0.6) ** 2 + 0.2**2) / 2)  # 0.1
    assert brier(y, scores, positive_index=1) == pytest.approx((0.1**2 + (1 - 0.3) ** 2) / 2)  # 0.25
    assert brier(y, scores) == pytest.approx(0.25)  # no defect class: column 1
    # three classes: squared distance to the one-hot label, summed over classes, averaged over rows
    # (.2^2 + .1^2 + .1^2) = .06 and (.3^2 + .3^2 + .6^2) = .54 -> .3
    assert brier(np.array([0, 2]), np.array([[0.8, 0.1, 0.1], [0.3, 0.3, 0.4]])) == pytest.approx(0.3)


def test_binary_without_a_defect_class_ranks_the_second_column():
    # the seven parts (defect first) with no positive_index: decisions by argmax, the threshold is not used
    # and not reported, ROC-AUC and PR-AUC score class 1 ("good", probability 1 - s).
    # ROC-AUC is symmetric: 3/4. Average precision of "good" (scores .35 .65 .7 .9 vs defects .1 .35 .7):
    # 0.9 -> P 1, R 1/4; 0.7 -> TP 2 FP 1, P 2/3, R 1/2; 0.65 -> TP 3 FP 1, P 3/4, R 3/4; 0.35 -> TP 4 FP 2, P 2/3,
    # R 1 -> 1/4 * (1 + 2/3 + 3/4 + 2/3) = 37/48. Brier of column 1: the same squares as above, 1.2675/7.
    y, probs, names = binary_case(0)
    m = no_warnings(y_true=y, probs=probs, class_names=names, threshold=0.3, bootstrap=0)
    assert set(m) == COMMON_KEYS
    assert_scalars(
        m,
        {
            "accuracy": 5 / 7,  # argmax is the 0.5 rule here: no part at exactly 0.5
            "roc_auc": 3 / 4,
            "pr_auc": 37 / 48,
            "brier": 1.2675 / 7,
            "positive_class": None,
            "threshold": None,
            "expected_cost": None,
            "notes": [NO_COST],
        },
    )
    assert "top_k_accuracy" not in m


# --- three classes, all present, decided by argmax -------------------------------------------------------------------
#
#   row  truth  probs (a, b, c)      argmax  rank of the truth  confidence
#   r0   a      .70  .20  .10        a       1                  .70
#   r1   a      .20  .50  .30        b       3                  .50
#   r2   b      .10  .55  .35        b       1                  .55
#   r3   b      .50  .45  .05        a       2                  .50
#   r4   c      .15  .15  .70        c       1                  .70
#   r5   c      .30  .25  .45        c       1                  .45
#
# Confusion [[1, 1, 0], [1, 1, 0], [0, 0, 2]]; accuracy 4/6. Per class: a and b precision = recall = F1 = 1/2, c 1;
# macro F1, weighted F1 (equal supports) and balanced accuracy (1/2 + 1/2 + 1)/3 = 2/3. MCC, Gorodkin's form with
# c = 4 right of s = 6, predicted and true counts all 2: (c*s - sum p_k t_k)/sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2))
# = (24 - 12)/sqrt(24 * 24) = 1/2. Top-2: all but r1 -> 5/6 (no top-3 with three classes).
# One-vs-rest ROC-AUC: a: positives .7, .2 vs .1 .5 .15 .3 -> (4 + 2)/8; b: .55, .45 vs .2 .5 .15 .25 -> (4 + 3)/8;
# c: .7, .45 vs .1 .3 .35 .05 -> 8/8; mean 7/8. Average precision: a: .7 P (R 1/2), .5 .3 N, .2 P (TP 2 FP 2)
# -> 1/2 + 1/2 * 1/2 = 3/4; b: .55 P, .5 N, .45 P -> 1/2 + 1/2 * 2/3 = 5/6; c: 1; mean 31/36.
# Brier: .14 + .98 + .335 + .555 + .135 + .455 = 2.6 -> 2.6/6. NLL -(2 ln .7 + ln .2 + ln .55 + 2 ln .45)/6.
# Reliability: .45 bin 6 (right, gap .55), .5 bin 7 (2 wrong, gap .5), .55 bin 8 (right, gap .45), .7 bin 10
# (2 right, gap .3): ECE (.55 + 2 * .5 + .45 + 2 * .3)/6 = 2.6/6, MCE .55.
Y3 = np.array([0, 0, 1, 1, 2, 2])
P3 = np.array(
    [
        [0.70, 0.20, 0.10],
        [0.20, 0.50, 0.30],
        [0.10, 0.55, 0.35],
        [0.50, 0.45, 0.05],
        [0.15, 0.15, 0.70],
        [0.30, 0.25, 0.45],
    ]
)
THREE = {
    "n": 6,
    "class_names": ["a", "b", "c"],
    "accuracy": 4 / 6,
    "balanced_accuracy": 2 / 3,
    "macro_f1": 2 / 3,
    "weighted_f1": 2 / 3,
    "mcc": 0.5,
    "roc_auc": 7 / 8,
    "pr_auc": 31 / 36,
    "brier": 2.6 / 6,
    "nll": -(2 * math.log(0.7) + math.log(0.2) + math.log(0.55) + 2 * math.log(0.45)) / 6,
    "ece": 2.6 / 6,
    "mce": 0.55,
    "positive_class": None,
    "threshold": None,
    "expected_cost": None,
    "notes": [NO_COST],
}


def test_three_classes_every_metric_by_hand():
    m = no_warnings(y_true=Y3, probs=P3, class_names="abc", bootstrap=0)
    assert set(m) == COMMON_KEYS | {"top_k_accuracy"}
    assert_scalars(m, THREE)
    assert m["confusion_matrix"] == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert m["per_class"] == approx_rows(
        [
            {"class": "a", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
            {"class": "b", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
            {"class": "c", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2},
        ]
    )
    assert m["top_k_accuracy"] == {"top2": pytest.approx(5 / 6)}
    strict_json(m)


def test_three_classes_ignore_a_defect_class_and_threshold():
    # positive_index and threshold mean a binary rule; with three classes decisions stay argmax, no defect
    # counts, no defect-recall interval, and neither is reported as in force
    m = no_warnings(y_true=Y3, probs=P3, class_names="abc", positive_index=1, threshold=0.3, bootstrap=50, seed=1)
    assert set(m) == COMMON_KEYS | CI_KEYS | {"top_k_accuracy"}
    assert_scalars(m, THREE)
    assert set(m["ci"]) == {"accuracy", "macro_f1"}


def test_four_classes_top2_and_top3():
    # the truth ranks 1st, 2nd, 3rd and 4th in the four rows: top-2 2/4, top-3 3/4 (top-4 is not asked for)
    row = [0.4, 0.3, 0.2, 0.1]
    m = no_warnings(y_true=[0, 1, 2, 3], probs=[row] * 4, class_names="abcd", bootstrap=0)
    assert m["top_k_accuracy"] == {"top2": 0.5, "top3": 0.75}
    # one part per class, every score tied with the other rows': each one-vs-rest AUC is 1/2, each AP 1/4
    assert m["roc_auc"] == 0.5 and m["pr_auc"] == 0.25


# --- three classes, "b" neither in the truth nor ever predicted ----------------------------------------------------
#
#   row  truth  probs (a, b, c)      argmax  confidence
#   r0   a      .75  .05  .20        a       .75  right
#   r1   a      .30  .05  .65        c       .65  wrong
#   r2   c      .30  .15  .55        c       .55  right
#   r3   c      .10  .20  .70        c       .70  right
#
# Confusion over all three labels [[1, 0, 1], [0, 0, 0], [0, 0, 2]]; accuracy 3/4. Per class: a precision 1,
# recall 1/2, F1 2/3; b all 0 with support 0 (a ratio with nothing to count is 0); c precision 2/3, recall 1,
# F1 4/5. Macro and weighted F1 are scikit-learn's over the labels seen, a and c: (2/3 + 4/5)/2 = 11/15 (equal
# supports); balanced accuracy (1/2 + 1)/2 = 3/4; MCC (3*4 - (2*1 + 2*3))/sqrt((16 - 1 - 9)(16 - 4 - 4)) = 1/sqrt(3).
# ROC-AUC and PR-AUC over the two classes with both outcomes: a: .75, .30 vs .30 (tie), .10 -> (2 + 1.5)/4, AP
# .75 P, .30 P+N -> 1/2 + 1/2 * 2/3 = 5/6; c: .55, .70 vs .20, .65 -> (1 + 2)/4, AP .7 P, .65 N, .55 P -> 5/6.
# Top-2: r1's truth is second -> 4/4. Brier (.105 + .915 + .315 + .14)/4. Reliability: gaps .25 (bin 11), .65
# (bin 9), .45 (bin 8), .3 (bin 10), one part each: ECE 1.65/4, MCE .65.
Y_ABSENT = np.array([0, 0, 2, 2])
P_ABSENT = np.array([[0.75, 0.05, 0.20], [0.30, 0.05, 0.65], [0.30, 0.15, 0.55], [0.10, 0.20, 0.70]])


def test_a_class_absent_from_truth_and_predictions():
    m = no_warnings(y_true=Y_ABSENT, probs=P_ABSENT, class_names="abc", bootstrap=0)
    assert_scalars(
        m,
        {
            "accuracy": 3 / 4,
            "balanced_accuracy": 3 / 4,
            "macro_f1": 11 / 15,
            "weighted_f1": 11 / 15,
            "mcc": 1 / math.sqrt(3),
            "roc_auc": (7 / 8 + 3 / 4) / 2,
            "pr_auc": 5 / 6,
            "brier": 1.475 / 4,
            "nll": -(math.log(0.75) + math.log(0.30) + math.log(0.55) + math.log(0.70)) / 4,
            "ece": 1.65 / 4,
            "mce": 0.65,
            "notes": [
                "classes absent from the labels of this split: b",
                "one-vs-rest ROC-AUC/PR-AUC averaged over the 2 classes present with both outcomes",
                NO_COST,
            ],
        },
    )
    assert m["confusion_matrix"] == [[1, 0, 1], [0, 0, 0], [0, 0, 2]]
    assert m["per_class"] == approx_rows(
        [
            {"class": "a", "precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2},
            {"class": "b", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
            {"class": "c", "precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2},
        ]
    )
    assert m["top_k_accuracy"] == {"top2": 1.0}


def test_one_class_of_three_in_the_truth():
    # only "c": nothing to rank or balance. Decisions c, a, c: accuracy 2/3; F1 over the labels seen (a, c):
    # a 0 (one false alarm), c 2*2/(2*2 + 1) = 4/5 -> macro 2/5, weighted by support (0 and 3) 4/5; MCC 0/0,
    # which scikit-learn reports as 0. Top-2: r1's truth (.3) is second -> 1.
    probs = [[0.10, 0.20, 0.70], [0.55, 0.15, 0.30], [0.05, 0.10, 0.85]]
    m = no_warnings(y_true=[2, 2, 2], probs=probs, class_names="abc", bootstrap=0)
    assert_scalars(
        m,
        {
            "accuracy": 2 / 3,
            "balanced_accuracy": None,
            "macro_f1": 0.4,
            "weighted_f1": 0.8,
            "mcc": 0.0,
            "roc_auc": None,
            "pr_auc": None,
            "notes": ["classes absent from the labels of this split: a, b", ONE_CLASS, NO_COST],
        },
    )
    assert m["top_k_accuracy"] == {"top2": 1.0}
    strict_json(m)


def test_defects_only():
    # three defects decided defect, good, defect: TP 2, FN 1, no good part -> no false-alarm rate
    y = np.array([1, 1, 1])
    probs = np.array([[0.1, 0.9], [0.7, 0.3], [0.3, 0.7]])
    m = no_warnings(y_true=y, probs=probs, class_names=["good", "defect"], positive_index=1, threshold=0.5, bootstrap=0)
    assert_scalars(
        m,
        {
            "tp": 2,
            "fn": 1,
            "fp": 0,
            "tn": 0,
            "accuracy": 2 / 3,
            "balanced_accuracy": None,
            "roc_auc": None,
            "pr_auc": None,
            "defect_recall": 2 / 3,
            "defect_precision": 1.0,
            "false_alarm_rate": None,
            "expected_cost": 10 / 3,
            "notes": ["classes absent from the labels of this split: good", ONE_CLASS, NO_GOOD],
        },
    )
    strict_json(m)


@pytest.mark.parametrize("defect_index", [0, 1])
def test_good_parts_only_none_called_defect(defect_index):
    # three good parts, none reaching the threshold: no recall, no precision, false-alarm rate 0, cost 0
    names = ["defect", "good"] if defect_index == 0 else ["good", "defect"]
    s = np.array([0.1, 0.2, 0.3])
    probs = np.empty((3, 2))
    probs[:, defect_index], probs[:, 1 - defect_index] = s, 1 - s
    m = no_warnings(
        y_true=[1 - defect_index] * 3,
        probs=probs,
        class_names=names,
        positive_index=defect_index,
        threshold=0.5,
        bootstrap=20,
    )
    assert_scalars(
        m,
        {
            "tp": 0,
            "fn": 0,
            "fp": 0,
            "tn": 3,
            "accuracy": 1.0,
            "defect_recall": None,
            "defect_precision": None,
            "false_alarm_rate": 0.0,
            "expected_cost": 0.0,
            "notes": [
                "classes absent from the labels of this split: defect",
                ONE_CLASS,
                NO_DEFECTS,
                NO_DEFECT_PREDICTED,
            ],
        },
    )
    assert m["ci"]["defect_recall"] is None
    strict_json(m)


def test_one_of_each_outcome_and_costs():
    # TP = FN = FP = TN = 1: every ratio 1/2, no note; cost (4 * 1 + 3 * 1)/4
    y = np.array([1, 1, 0, 0])
    probs = np.array([[0.2, 0.8], [0.8, 0.2], [0.3, 0.7], [0.9, 0.1]])
    m = no_warnings(
        y_true=y,
        probs=probs,
        class_names=["good", "defect"],
        positive_index=1,
        threshold=0.5,
        cost_fn=4,
        cost_fp=3,
        bootstrap=0,
    )
    assert_scalars(
        m,
        {
            "tp": 1,
            "fn": 1,
            "fp": 1,
            "tn": 1,
            "defect_recall": 0.5,
            "defect_precision": 0.5,
            "false_alarm_rate": 0.5,
            "expected_cost": 7 / 4,
            "cost_fn": 4.0,
            "cost_fp": 3.0,
            "notes": [],
        },
    )
    assert type(m["cost_fn"]) is float and type(m["cost_fp"]) is float


def test_a_part_exactly_at_the_threshold_is_a_defect():
    # p = 0.5 at threshold 0.5 is called defect; at 0.6 it is not
    y = np.array([0, 1])
    probs = np.array([[0.5, 0.5], [0.1, 0.9]])
    at = compute_metrics(y, probs, class_names=["good", "defect"], positive_index=1, threshold=0.5, bootstrap=0)
    assert (at["tp"], at["fp"], at["fn"], at["tn"]) == (1, 1, 0, 0)
    above = compute_metrics(y, probs, class_names=["good", "defect"], positive_index=1, threshold=0.6, bootstrap=0)
    assert (above["tp"], above["fp"], above["fn"], above["tn"]) == (1, 0, 0, 1)
    # a single defect is enough to rank: its 0.9 is above the good part's 0.5
    assert at["roc_auc"] == 1.0 and at["pr_auc"] == 1.0


def test_all_correct_and_all_wrong_with_their_exact_intervals():
    # Clopper-Pearson at 0 or n successes has a closed form: n of n -> [(alpha/2)^(1/n), 1];
    # 0 of n -> [0, 1 - (alpha/2)^(1/n)]; here n = 4, alpha/2 = 0.025
    y = np.array([0, 1, 0, 1])
    names = ["good", "defect"]
    right = no_warnings(
        y_true=y,
        probs=[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]],
        class_names=names,
        positive_index=1,
        threshold=0.5,
        bootstrap=10,
    )
    assert_scalars(right, {"accuracy": 1.0, "mcc": 1.0, "macro_f1": 1.0, "defect_recall": 1.0, "roc_auc": 1.0})
    assert right["ci"]["accuracy"] == pytest.approx([0.025**0.25, 1.0])
    assert right["ci"]["defect_recall"] == pytest.approx([0.025**0.5, 1.0])  # 2 of 2 defects
    assert right["ci"]["macro_f1"] == [1.0, 1.0]  # every resample is perfect too
    wrong = no_warnings(
        y_true=y,
        probs=[[0.1, 0.9], [0.8, 0.2], [0.4, 0.6], [0.7, 0.3]],
        class_names=names,
        positive_index=1,
        threshold=0.5,
        bootstrap=10,
    )
    assert_scalars(
        wrong,
        {"accuracy": 0.0, "mcc": -1.0, "macro_f1": 0.0, "defect_recall": 0.0, "defect_precision": 0.0, "roc_auc": 0.0},
    )
    assert wrong["ci"]["accuracy"] == pytest.approx([0.0, 1 - 0.025**0.25])
    assert wrong["ci"]["defect_recall"] == pytest.approx([0.0, 1 - 0.025**0.5])


@pytest.mark.parametrize(("successes", "n"), [(0, 1), (1, 1), (0, 5), (5, 5), (3, 10), (7, 9), (446, 453)])
def test_exact_interval_is_scipys_clopper_pearson(successes, n):
    ref = binomtest(successes, n).proportion_ci(0.95, method="exact")
    assert exact_interval(successes, n) == pytest.approx([ref.low, ref.high], rel=1e-9, abs=1e-12)
    ref = binomtest(successes, n).proportion_ci(0.8, method="exact")
    assert exact_interval(successes, n, level=0.8) == pytest.approx([ref.low, ref.high], rel=1e-9, abs=1e-12)


def test_exact_interval_bounds_at_the_ends():
    assert exact_interval(0, 10) == [0.0, pytest.approx(1 - 0.025**0.1)]
    assert exact_interval(10, 10) == [pytest.approx(0.025**0.1), 1.0]


# --- bootstrap -------------------------------------------------------------------------------------------------------


def resample_macro_f1(y, pred, *, n_boot, seed):
    """Macro F1 (scikit-learn, over the labels each resample has) of each resample, drawn as documented."""
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    return [f1_score(y[i], pred[i], average="macro", zero_division=0) for i in idx]


@pytest.mark.parametrize(("n_boot", "seed"), [(5, 0), (5, 3), (300, 11)])
def test_bootstrap_on_a_small_split_matches_a_loop_over_resamples(n_boot, seed):
    # five parts in three classes: many resamples lack a class entirely (left out of their mean, as scikit-learn
    # does), or hold it once, wrongly (F1 0, kept); with five resamples every one of them moves the interval
    y = np.array([0, 0, 1, 2, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.6, 0.1, 0.3]])
    pred = np.array([0, 1, 1, 2, 0])
    m = no_warnings(y_true=y, probs=probs, class_names="abc", bootstrap=n_boot, seed=seed)
    f1s = resample_macro_f1(y, pred, n_boot=n_boot, seed=seed)
    assert m["ci"]["macro_f1"] == pytest.approx(list(np.percentile(f1s, [2.5, 97.5])))
    ref = binomtest(3, 5).proportion_ci(0.95, method="exact")
    assert m["ci"]["accuracy"] == pytest.approx([ref.low, ref.high])


def test_bootstrap_of_one_resample():
    # one resample: its macro F1 is both ends of the interval
    y, probs, names = binary_case(1)
    pred = np.where(np.asarray(S) >= 0.5, 1, 0)
    m = no_warnings(y_true=y, probs=probs, class_names=names, positive_index=1, threshold=0.5, bootstrap=1, seed=3)
    (f1,) = resample_macro_f1(y, pred, n_boot=1, seed=3)
    assert m["ci"]["macro_f1"] == [pytest.approx(f1), pytest.approx(f1)]
    assert m["bootstrap"] == {"resamples": 1, "seed": 3}


@pytest.mark.parametrize("defect_index", [0, 1])
def test_bootstrap_shape_seed_and_record(defect_index):
    y, probs, names = binary_case(defect_index)
    kwargs = {"class_names": names, "positive_index": defect_index, "threshold": 0.5}
    m1 = no_warnings(y_true=y, probs=probs, bootstrap=200, seed=5, **kwargs)
    m2 = no_warnings(y_true=y, probs=probs, bootstrap=200, seed=5, **kwargs)
    assert set(m1) == COMMON_KEYS | DEFECT_KEYS | CI_KEYS
    assert m1["ci"] == m2["ci"]
    assert m1["ci_level"] == 0.95
    assert m1["bootstrap"] == {"resamples": 200, "seed": 5}
    assert (
        m1["ci_method"]
        == CI_METHODS
        == {
            "accuracy": "Clopper-Pearson exact binomial",
            "defect_recall": "Clopper-Pearson exact binomial",
            "macro_f1": "percentile bootstrap",
        }
    )
    assert set(m1["ci"]) == {"accuracy", "macro_f1", "defect_recall"}
    ref = binomtest(5, 7).proportion_ci(0.95, method="exact")
    assert m1["ci"]["accuracy"] == pytest.approx([ref.low, ref.high])
    ref = binomtest(2, 3).proportion_ci(0.95, method="exact")
    assert m1["ci"]["defect_recall"] == pytest.approx([ref.low, ref.high])
    pred = np.where(np.asarray(S) >= 0.5, defect_index, 1 - defect_index)
    f1s = resample_macro_f1(y, pred, n_boot=200, seed=5)
    assert m1["ci"]["macro_f1"] == pytest.approx(list(np.percentile(f1s, [2.5, 97.5])))
    strict_json(m1)


def test_bootstrap_defaults_are_1000_resamples_seed_0():
    y, probs, names = binary_case(1)
    m = compute_metrics(y, probs, class_names=names, positive_index=1, threshold=0.5)
    assert m["bootstrap"] == {"resamples": 1000, "seed": 0}
    f1s = resample_macro_f1(y, np.where(np.asarray(S) >= 0.5, 1, 0), n_boot=1000, seed=0)
    assert m["ci"]["macro_f1"] == pytest.approx(list(np.percentile(f1s, [2.5, 97.5])))


@pytest.mark.parametrize("bootstrap", [0, -5, None])
def test_no_bootstrap_means_no_intervals(bootstrap):
    y, probs, names = binary_case(1)
    m = compute_metrics(y, probs, class_names=names, positive_index=1, threshold=0.5, bootstrap=bootstrap)
    assert m["ci"] == {}
    assert not CI_KEYS & set(m)


# --- reliability bins ------------------------------------------------------------------------------------------------


def test_reliability_bins_on_edges_empty_bins_and_one():
    # 4 bins (0, .25], (.25, .5], (.5, .75], (.75, 1]: a confidence on an edge belongs to the bin below it.
    # .5 (right) -> bin 1; .75 (argmax b, truth a: wrong) -> bin 2; 1.0 twice (right) -> bin 3; bin 0 is empty.
    # ECE 1/4 * |1 - .5| + 1/4 * |0 - .75| + 2/4 * 0 = .3125; MCE .75.
    y = np.array([0, 0, 0, 1])
    probs = np.array([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0], [0.0, 1.0]])
    assert reliability_bins(y, probs, n_bins=4) == {
        "ece": 0.3125,
        "mce": 0.75,
        "bins": [
            {"lo": 0.0, "hi": 0.25, "count": 0, "accuracy": None, "confidence": None},
            {"lo": 0.25, "hi": 0.5, "count": 1, "accuracy": 1.0, "confidence": 0.5},
            {"lo": 0.5, "hi": 0.75, "count": 1, "accuracy": 0.0, "confidence": 0.75},
            {"lo": 0.75, "hi": 1.0, "count": 2, "accuracy": 1.0, "confidence": 1.0},
        ],
    }


def test_reliability_bins_default_fifteen_and_the_lowest_bin():
    # sixteen classes, uniform: confidence 1/16, below the first edge 1/15 -> bin 0, argmax (class 0) right for
    # the first row only; plus a sure and right part -> bin 14. Gaps |1/2 - 1/16| and 0 -> ECE 7/16 * 2/3.
    uniform = np.full(16, 1 / 16)
    sure = np.eye(16)[3]
    rel = reliability_bins(np.array([0, 5, 3]), np.stack([uniform, uniform, sure]))
    bins = rel["bins"]
    assert len(bins) == 15
    assert [b["lo"] for b in bins] == pytest.approx([b / 15 for b in range(15)])
    assert [b["hi"] for b in bins] == pytest.approx([(b + 1) / 15 for b in range(15)])
    assert [b["count"] for b in bins] == [2] + [0] * 13 + [1]
    assert bins[0]["accuracy"] == 0.5 and bins[0]["confidence"] == pytest.approx(1 / 16)
    assert rel["ece"] == pytest.approx(2 / 3 * 7 / 16)
    assert rel["mce"] == pytest.approx(7 / 16)


def test_reliability_bins_zero_and_a_hair_over_one_stay_in_the_end_bins():
    # the first bin also holds confidence 0; rounding can leave a calibrated probability a hair over 1,
    # which still belongs to the last bin
    rel = reliability_bins(np.array([0, 0]), np.array([[0.0, 0.0], [1.0 + 2**-52, 0.0]]))
    assert [b["count"] for b in rel["bins"]] == [1] + [0] * 13 + [1]
    assert rel["bins"][0]["accuracy"] == 1.0 and rel["bins"][14]["accuracy"] == 1.0


# --- JSON-safe numbers -----------------------------------------------------------------------------------------------


def test_num_turns_non_finite_into_none_and_numpy_into_float():
    assert _num(float("nan")) is None
    assert _num(np.inf) is None
    assert _num(-np.inf) is None
    assert _num(np.float32(0.25)) == 0.25 and type(_num(np.float32(0.25))) is float
    assert _num(3) == 3.0


def test_numpy_threshold_and_infinite_cost_come_back_json_safe():
    # a threshold read from an array is a numpy scalar; a missed defect priced as unacceptable (inf) makes an
    # infinite expected cost: both must come back as JSON (float and null), not as numpy scalars or Infinity
    y, probs, names = binary_case(1)
    m = compute_metrics(
        y, probs, class_names=names, positive_index=1, threshold=np.float32(0.5), cost_fn=math.inf, bootstrap=0
    )
    assert m["threshold"] == 0.5 and type(m["threshold"]) is float
    assert m["expected_cost"] is None and m["cost_fn"] is None
    strict_json(m)


def test_float32_probabilities_give_the_same_numbers_as_float64():
    # models hand out float32; the metrics are computed in float64 from the same values, so the result is identical
    # (sixty-fourths, so each row sums to exactly 1 in both)
    rng = np.random.default_rng(12)
    y = rng.integers(0, 3, 60)
    p32 = ((rng.multinomial(61, [1 / 3] * 3, size=60) + 1) / 64).astype(np.float32)
    m32 = compute_metrics(y, p32, class_names="abc", bootstrap=0)
    m64 = compute_metrics(y, p32.astype(np.float64), class_names="abc", bootstrap=0)
    assert m32 == m64


# --- refusals, each with its exact sentence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "probs", "names", "message"),
    [
        (
            np.array([], dtype=int),
            np.zeros((0, 2)),
            ["ok", "defect"],
            "no samples to evaluate: the split is empty (check the manifest's split column)",
        ),
        ([0], [[1.0]], ["ok"], "need at least 2 class names, got ['ok']"),
        (
            [0, 1],
            np.zeros((2, 3)),
            ["ok", "defect"],
            "probabilities must have shape (n_samples, n_classes) = (2, 2), got (2, 3)",
        ),
        (
            [0, 1],
            [0.2, 0.8],
            ["ok", "defect"],
            "probabilities must have shape (n_samples, n_classes) = (2, 2), got (2,)",
        ),
        ([0, 2], [[0.5, 0.5]] * 2, ["ok", "defect"], "labels must be class indices in [0, 1], got values [0 2]"),
        ([0, 3], [[0.2, 0.3, 0.5]] * 2, "abc", "labels must be class indices in [0, 2], got values [0 3]"),
        ([-1, 1], [[0.5, 0.5]] * 2, ["ok", "defect"], "labels must be class indices in [0, 1], got values [-1  1]"),
        ([0.0, 1.0], [[0.5, 0.5]] * 2, ["ok", "defect"], "labels must be class indices in [0, 1], got values [0. 1.]"),
        (
            np.arange(12)[::-1],
            [[0.5, 0.5]] * 12,
            ["ok", "defect"],
            "labels must be class indices in [0, 1], got values [0 1 2 3 4 5 6 7 8 9]",
        ),
        (
            [0, 1],
            [[np.nan, 1.0], [0.2, 0.8]],
            ["ok", "defect"],
            "probabilities contain NaN or infinite values (check the model's logits)",
        ),
        (
            [0, 1],
            [[0.0, np.inf], [0.2, 0.8]],
            ["ok", "defect"],
            "probabilities contain NaN or infinite values (check the model's logits)",
        ),
    ],
)
def test_refusals_say_what_is_wrong(y, probs, names, message):
    with pytest.raises(DefectlensError) as caught:
        compute_metrics(y, probs, class_names=names, bootstrap=0)
    assert str(caught.value) == message


@pytest.mark.parametrize("positive_index", [-1, 2, 3])
def test_positive_index_out_of_range_is_refused(positive_index):
    y, probs, names = binary_case(1)
    with pytest.raises(DefectlensError) as caught:
        compute_metrics(y, probs, class_names=names, positive_index=positive_index, threshold=0.5, bootstrap=0)
    assert str(caught.value) == f"positive_index {positive_index} is out of range for 2 classes"
