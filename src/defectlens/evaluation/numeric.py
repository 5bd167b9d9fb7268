"""The classification and ranking metrics :func:`~defectlens.evaluation.metrics.compute_metrics` reports, in
NumPy: confusion matrix, precision/recall/F1, balanced accuracy, MCC, ROC-AUC, average precision, top-k
accuracy, the Brier score and log loss.

They used to come from scikit-learn, which with SciPy is about 190 MB of a 395 MB torch-free install; the
paths that run a bundle (``predict`` on a labelled folder, ``bundle --calibrate``, the Inspector's running
figures) need only these few formulas. Each function follows scikit-learn's definition of the metric of the
same name, including what it does with a class that is absent or never predicted, and the tests hold each one
to scikit-learn within 1e-12 (``tests/unit/evaluation/test_numeric.py``, scikit-learn as the oracle).

Labels are class indices ``0 .. k - 1``; ``k`` is the number of classes of the model, so a class with no
sample keeps its row and column.
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts; rows are true classes, columns predicted ones."""
    flat = np.asarray(y_true, dtype=np.int64) * k + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(flat, minlength=k * k).reshape(k, k)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def precision_recall_f1_support(
    y_true: np.ndarray, y_pred: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class: precision, recall, F1 (0 where undefined) and support (true count)."""
    cm = confusion_matrix(y_true, y_pred, k)
    tp, true_sum, pred_sum = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    f1 = _divide(2.0 * tp, true_sum.astype(np.float64) + pred_sum.astype(np.float64))
    return _divide(tp, pred_sum), _divide(tp, true_sum), f1, true_sum


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of samples whose prediction is their label."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    """Mean recall over the classes present in the labels."""
    cm = confusion_matrix(y_true, y_pred, k)
    true_sum = cm.sum(axis=1)
    present = true_sum > 0
    return float(np.mean(np.diag(cm)[present] / true_sum[present]))


def f1_average(y_true: np.ndarray, y_pred: np.ndarray, k: int, *, average: Literal["macro", "weighted"]) -> float:
    """F1 averaged over the classes present in the labels or the predictions: unweighted (``macro``), or
    weighted by each class's support (``weighted``)."""
    _, _, f1, support = precision_recall_f1_support(y_true, y_pred, k)
    cm = confusion_matrix(y_true, y_pred, k)
    seen = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    if average == "macro":
        return float(np.mean(f1[seen]))
    weights = support[seen]
    return float(np.average(f1[seen], weights=weights)) if weights.sum() > 0 else 0.0


def mcc(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    """Matthews correlation coefficient (Gorodkin's multi-class form); 0 when either side has one class only."""
    cm = confusion_matrix(y_true, y_pred, k)
    t_sum = cm.sum(axis=1, dtype=np.float64)
    p_sum = cm.sum(axis=0, dtype=np.float64)
    n_correct = np.trace(cm, dtype=np.float64)
    n = p_sum.sum()
    cov_ytyp = n_correct * n - np.dot(t_sum, p_sum)
    cov_ypyp = n**2 - np.dot(p_sum, p_sum)
    cov_ytyt = n**2 - np.dot(t_sum, t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ypyp * cov_ytyt))


def _ranked_counts(y_binary: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives above each distinct score, highest score first (``score >= s`` is positive)."""
    y = np.asarray(y_binary).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.all() or not y.any():
        raise ValueError("ranking metrics need both outcomes among the labels")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last sample of each run of equal scores
    tps = np.cumsum(y, dtype=np.int64)[last]
    return tps, last + 1 - tps


def roc_auc(y_binary: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids, so a tie between a defect and a good part counts one half).

    Raises:
        ValueError: when the labels hold one outcome only (the area is undefined).
    """
    tps, fps = _ranked_counts(y_binary, scores)
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    twice_area = int(np.sum(np.diff(fps) * (tps[1:] + tps[:-1])))  # exact in integers
    return twice_area / (2 * int(tps[-1]) * int(fps[-1]))


def average_precision(y_binary: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: precision at each distinct score weighted by the recall it adds (no interpolation).

    Raises:
        ValueError: when the labels hold one outcome only.
    """
    tps, fps = _ranked_counts(y_binary, scores)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return max(0.0, float(np.sum(np.diff(np.r_[0.0, recall]) * precision)))


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of samples whose label is among the ``k`` most probable classes; among equal probabilities
    the higher class index ranks first."""
    ranked = np.argsort(np.asarray(probs), axis=1, kind="mergesort")[:, ::-1]
    hits = (np.asarray(y_true) == ranked[:, :k].T).any(axis=0)
    return float(np.mean(hits))


def brier_binary(y_binary: np.ndarray, p_positive: np.ndarray) -> float:
    """Mean squared error of the positive class's probability."""
    p = np.asarray(p_positive, dtype=np.float64)
    y = np.asarray(y_binary, dtype=np.float64)
    # the two-column form and its half, as scikit-learn computes it (the same number, to the last bit)
    squares = (np.stack([1.0 - y, y], axis=1) - np.stack([1.0 - p, p], axis=1)) ** 2
    return float(np.mean(squares.sum(axis=1)) * 0.5)


def log_loss(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log probability of the true class, probabilities clipped to ``[eps, 1 - eps]``."""
    p = np.asarray(probs, dtype=np.float64)
    eps = np.finfo(p.dtype).eps
    true_p = np.clip(p, eps, 1 - eps)[np.arange(len(p)), np.asarray(y_true, dtype=np.int64)]
    return float(np.mean(-np.log(true_p)))
