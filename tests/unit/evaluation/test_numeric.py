"""The NumPy metrics (``evaluation/numeric.py``) against scikit-learn, the oracle: fixed cases, then property tests
on random labels, predictions and probabilities (ties, absent classes, one class only), all within 1e-12."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from defectlens.evaluation import numeric

TOL = 1e-12
# the oracle warns about absent classes and single labels: the cases these tests are made of
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:sklearn.*")


def _close(got: float, want: float) -> None:
    assert isinstance(got, float)
    assert abs(got - float(want)) <= TOL, (got, want)


def check_classification(y: np.ndarray, pred: np.ndarray, k: int) -> None:
    labels = list(range(k))
    prec, rec, f1, sup = numeric.precision_recall_f1_support(y, pred, k)
    with np.errstate(all="ignore"):
        want = sk.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    for got, ref in zip((prec, rec, f1, sup), want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL)
    np.testing.assert_array_equal(numeric.confusion_matrix(y, pred, k), sk.confusion_matrix(y, pred, labels=labels))
    _close(numeric.accuracy(y, pred), sk.accuracy_score(y, pred))
    _close(numeric.f1_average(y, pred, k, average="macro"), sk.f1_score(y, pred, average="macro", zero_division=0))
    _close(
        numeric.f1_average(y, pred, k, average="weighted"), sk.f1_score(y, pred, average="weighted", zero_division=0)
    )
    _close(numeric.mcc(y, pred, k), sk.matthews_corrcoef(y, pred))
    if len(np.unique(y)) > 1:  # compute_metrics reports None otherwise
        _close(numeric.balanced_accuracy(y, pred, k), sk.balanced_accuracy_score(y, pred))


def check_ranking(yb: np.ndarray, scores: np.ndarray) -> None:
    _close(numeric.roc_auc(yb, scores), sk.roc_auc_score(yb, scores))
    _close(numeric.average_precision(yb, scores), sk.average_precision_score(yb, scores))


def check_probabilistic(y: np.ndarray, probs: np.ndarray) -> None:
    k = probs.shape[1]
    _close(numeric.log_loss(y, probs), sk.log_loss(y, probs, labels=list(range(k))))
    for kk in (2, 3):
        if kk < k:
            _close(numeric.top_k_accuracy(y, probs, kk), sk.top_k_accuracy_score(y, probs, k=kk, labels=list(range(k))))
    if k == 2:
        for pos in (0, 1):
            yb = (y == pos).astype(int)
            _close(numeric.brier_binary(yb, probs[:, pos]), sk.brier_score_loss(yb, probs[:, pos], pos_label=1))


# -- fixed cases ----------------------------------------------------------------------------------------------


def test_binary_hand_case_and_its_numbers():
    y = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.7, 0.4, 0.9])
    pred = (scores >= 0.5).astype(int)  # 0 1 1 0 1: TP 2, FP 1, FN 1, TN 1
    assert numeric.confusion_matrix(y, pred, 2).tolist() == [[1, 1], [1, 2]]
    assert numeric.roc_auc(y, scores) == 5 / 6  # 5 of the 6 (good, defect) pairs ranked right
    # AP: recall steps 1/3 at 0.9 (precision 1), 2/3 at 0.7 (1), 1 at 0.4 (3/4)
    assert numeric.average_precision(y, scores) == pytest.approx(1 / 3 + 1 / 3 + 1 / 4, abs=TOL)
    check_classification(y, pred, 2)
    check_ranking(y, scores)
    check_probabilistic(y, np.stack([1 - scores, scores], axis=1))


def test_ties_count_one_half_and_rank_higher_classes_first():
    y = np.array([0, 1, 0, 1])
    scores = np.array([0.5, 0.5, 0.2, 0.8])
    assert numeric.roc_auc(y, scores) == 0.875  # 4 (good, defect) pairs: 3 ranked right, 1 tie counting 1/2
    check_ranking(y, scores)
    probs = np.array([[0.4, 0.2, 0.4], [0.3, 0.3, 0.4], [1 / 3, 1 / 3, 1 / 3]])
    # equal probabilities: the higher class index ranks first (scikit-learn's stable sort, reversed)
    assert numeric.top_k_accuracy(np.array([0, 0, 0]), probs, 2) == 1 / 3  # only the first row keeps 0 in its top 2
    check_probabilistic(np.array([0, 1, 2]), probs)


def test_absent_and_never_predicted_classes():
    y = np.array([0, 0, 2, 2, 2, 0])
    pred = np.array([0, 3, 2, 0, 2, 0])  # class 1 nowhere, class 3 predicted only
    check_classification(y, pred, 4)
    assert numeric.precision_recall_f1_support(y, pred, 4)[2][1] == 0.0


def test_one_class_everywhere():
    y = pred = np.array([1, 1, 1])
    check_classification(y, pred, 2)
    assert numeric.mcc(y, pred, 2) == 0.0
    one_outcome = "^ranking metrics need both outcomes among the labels$"
    with pytest.raises(ValueError, match=one_outcome):
        numeric.roc_auc(np.array([1, 1]), np.array([0.2, 0.3]))
    with pytest.raises(ValueError, match=one_outcome):
        numeric.average_precision(np.array([0, 0]), np.array([0.2, 0.3]))


def test_weighted_f1_with_no_support_to_weigh_by_is_zero_like_sklearn():
    """When the supports that weight the mean sum to zero, the weighted F1 is scikit-learn's zero_division=0
    answer, 0.0, not a ZeroDivisionError. scikit-learn meets it with labels absent from the truth; here, where
    every label in the truth or the predictions counts, only with no sample at all."""
    assert sk.f1_score([0], [0], labels=[1], average="weighted", zero_division=0) == 0.0
    nothing = np.array([], dtype=np.int64)
    assert numeric.f1_average(nothing, nothing, 2, average="weighted") == 0.0


def test_certain_wrong_probabilities_are_clipped_like_sklearn():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    y = np.array([1, 1, 0])  # the first sample: probability 0 for its class
    check_probabilistic(y, probs)
    assert np.isfinite(numeric.log_loss(y, probs))


def test_certain_right_probabilities_cost_the_clipped_eps_like_sklearn():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 1])
    # exactly, not within TOL: clipped to 1 - eps, each sample costs -log(1 - eps) = 2.2e-16, not 0
    assert numeric.log_loss(y, probs) == sk.log_loss(y, probs)
    assert 0 < numeric.log_loss(y, probs) < 1e-15


def test_scores_of_any_dtype_rank_by_value_like_sklearn():
    """Scores may be 8-bit values (an anomaly map's maximum) or hard decisions (bool), not only floats: each is
    ranked by its value, as scikit-learn ranks it (negated as uint8, 0 would wrap to the top; a bool cannot be
    negated at all)."""
    y = np.array([0, 1, 1, 0, 1])
    as_uint8 = np.array([0, 200, 200, 30, 90], dtype=np.uint8)
    assert numeric.roc_auc(y, as_uint8) == 1.0  # every defect above every good part
    check_ranking(y, as_uint8)
    hard = np.array([False, True, False, True, True])
    # 6 (good, defect) pairs: 2 ranked right, 3 ties counting 1/2, 1 ranked wrong
    assert numeric.roc_auc(y, hard) == pytest.approx(7 / 12, abs=TOL)
    check_ranking(y, hard)


def test_float32_probabilities_count_at_their_float64_values():
    """ONNX Runtime hands back float32 probabilities: each metric reads them as their float64 values, so the
    numbers are those of scikit-learn on the float64 copy (in float32, 1 - p rounds and the Brier score moves by
    about 1e-10; the log loss's clip would use float32's eps, 1.2e-7, and a certain wrong answer would cost 15.9
    instead of 36.0)."""
    y = np.array([0, 1, 1, 0, 1])
    p32 = np.array([0.1, 0.7, 0.9, 0.3, 0.6], dtype=np.float32)
    _close(numeric.brier_binary(y, p32), sk.brier_score_loss(y, p32.astype(np.float64)))
    probs32 = np.stack([1 - p32, p32], axis=1)
    probs32[0] = [0.0, 1.0]  # certain, and wrong
    _close(numeric.log_loss(y, probs32), sk.log_loss(y, probs32.astype(np.float64)))
    assert numeric.log_loss(y, probs32) > 36.04 / 5  # the first sample alone: -log(2.2e-16) / 5


def test_labels_as_floats_or_booleans_are_the_same_class_indices():
    """Labels read back from a CSV come as floats, and a binary truth is often a comparison's booleans: both name
    the same classes as the integers, in every metric (scikit-learn reads them alike)."""
    y = np.array([0, 0, 1, 1, 1])
    pred = np.array([0, 1, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    for kind in (np.float64, bool):
        y_as, pred_as = y.astype(kind), pred.astype(kind)
        assert numeric.confusion_matrix(y_as, pred_as, 2).tolist() == [[1, 1], [1, 2]]
        assert numeric.log_loss(y_as, probs) == numeric.log_loss(y, probs)
        check_classification(y_as, pred_as, 2)
        check_probabilistic(y_as, probs)


# -- properties -----------------------------------------------------------------------------------------------


@st.composite
def labelled(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Labels, a prediction and probabilities (rounded to few values, so ties are common) for k classes."""
    k = draw(st.integers(2, 5))
    n = draw(st.integers(1, 60))
    y = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    pred = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    raw = np.array(draw(st.lists(st.integers(0, 6), min_size=n * k, max_size=n * k)), dtype=np.float64) + 0.5
    probs = raw.reshape(n, k)
    return y, pred, probs / probs.sum(axis=1, keepdims=True), k


@settings(max_examples=300, deadline=None)
@given(labelled())
def test_classification_matches_sklearn(case):
    y, pred, _, k = case
    check_classification(y, pred, k)


@settings(max_examples=300, deadline=None)
@given(labelled())
def test_probabilistic_metrics_match_sklearn(case):
    y, _, probs, _ = case
    check_probabilistic(y, probs)


@settings(max_examples=300, deadline=None)
@given(labelled(), st.integers(0, 4))
def test_ranking_matches_sklearn(case, column):
    y, _, probs, k = case
    c = column % k
    yb = (y == c).astype(int)
    if 0 < yb.sum() < len(yb):
        check_ranking(yb, probs[:, c])


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 400), st.integers(0, 2**32 - 1))
def test_continuous_scores_match_sklearn(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[0], y[-1] = 0, 1
    scores = rng.random(n)
    check_ranking(y, scores)
    check_probabilistic(y, np.stack([1 - scores, scores], axis=1))
