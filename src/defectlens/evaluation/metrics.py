"""Classification metrics for one split, with bootstrap confidence intervals.

Owns :func:`compute_metrics` (the classification and ranking metrics from :mod:`defectlens.evaluation.numeric`,
NumPy held to scikit-learn's definitions, so a torch-free install computes them without scikit-learn; ECE/MCE and
the bootstrap are written here) and :func:`reliability_bins`. Only the exact intervals of the bootstrap need
SciPy (the ``eval`` extra). Every value in the
returned dict is JSON-serialisable; a metric that is undefined on the given data (ROC-AUC with one
class present, defect recall with no defects) is ``None`` and a sentence in ``notes`` says why.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from defectlens.core.decision import decide
from defectlens.core.errors import DefectlensError
from defectlens.evaluation import numeric

ECE_BINS = 15

#: The figures a summary shows first (console tables, the report's key figures), in order.
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "defect_recall", "false_alarm_rate", "roc_auc")
#: Every scalar metric of :func:`compute_metrics` with its display name, in report order.
SCALARS = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_f1", "Macro F1"),
    ("weighted_f1", "Weighted F1"),
    ("mcc", "MCC"),
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC (average precision)"),
    ("defect_recall", "Defect recall"),
    ("defect_precision", "Defect precision"),
    ("false_alarm_rate", "False-alarm rate"),
    ("expected_cost", "Expected cost per part"),
    ("brier", "Brier score"),
    ("nll", "NLL (log loss)"),
    ("ece", "ECE (15 bins)"),
    ("mce", "MCE (15 bins)"),
)


def _num(x: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become ``None``."""
    x = float(x)
    return x if math.isfinite(x) else None


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, *, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """Top-label reliability: confidence (max probability) vs accuracy in equal-width bins.

    Bin ``b`` holds confidences in ``(b/n, (b+1)/n]`` (the first bin also holds 0). ECE is the
    count-weighted mean gap |accuracy - confidence|, MCE the largest gap over non-empty bins.
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    bins, ece, mce = [], 0.0, 0.0
    n = len(y_true)
    for b in range(n_bins):
        mask = idx == b
        count = int(mask.sum())
        row: dict[str, Any] = {"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count}
        if count:
            acc, cf = float(correct[mask].mean()), float(conf[mask].mean())
            gap = abs(acc - cf)
            ece += count / n * gap
            mce = max(mce, gap)
            row.update(accuracy=acc, confidence=cf)
        else:
            row.update(accuracy=None, confidence=None)
        bins.append(row)
    return {"ece": ece, "mce": mce, "bins": bins}


def brier(y_true: np.ndarray, probs: np.ndarray, *, positive_index: int | None = None) -> float:
    """Binary: mean squared error of the positive-class probability (scikit-learn's
    ``brier_score_loss``). Multi-class: mean over samples of the squared distance to the one-hot
    label, summed over classes (Brier's original definition)."""
    if probs.shape[1] == 2:
        pos = 1 if positive_index is None else positive_index
        return numeric.brier_binary((y_true == pos).astype(int), probs[:, pos])
    onehot = np.eye(probs.shape[1])[y_true]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def nll(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (scikit-learn's ``log_loss``)."""
    return numeric.log_loss(y_true, probs)


#: How each interval in ``ci`` is computed (recorded beside them).
CI_METHODS = {
    "accuracy": "Clopper-Pearson exact binomial",
    "defect_recall": "Clopper-Pearson exact binomial",
    "macro_f1": "percentile bootstrap",
}


def exact_interval(successes: int, n: int, level: float = 0.95) -> list[float]:
    """The Clopper-Pearson interval of a proportion ``successes / n``: it never claims more certainty than
    the counts give (715 of 715 correct: [0.9949, 1.0], not [1.0, 1.0])."""
    from scipy.stats import beta

    alpha = 1.0 - level
    lo = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
    hi = 1.0 if successes == n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return [lo, hi]


def _bootstrap(
    y: np.ndarray, pred: np.ndarray, *, k: int, positive_index: int | None, n_boot: int, seed: int
) -> dict[str, list[float] | None]:
    """95 % intervals: exact binomial for the proportions, percentile over ``n_boot`` resamples (computed at
    once as (B, n) arrays) for macro-F1."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    yt, yp = y[idx], pred[idx]
    out: dict[str, list[float] | None] = {}

    def interval(values: np.ndarray) -> list[float] | None:
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return None
        lo, hi = np.percentile(values, [2.5, 97.5])
        return [float(lo), float(hi)]

    # Accuracy and defect recall are proportions: their exact binomial interval stays honest at 0 errors,
    # where every resample is perfect too and a percentile bootstrap collapses to [1, 1].
    out["accuracy"] = exact_interval(int((y == pred).sum()), len(y))
    f1s = np.full((n_boot, k), np.nan)
    for c in range(k):
        tp = ((yt == c) & (yp == c)).sum(axis=1)
        fp = ((yt != c) & (yp == c)).sum(axis=1)
        fn = ((yt == c) & (yp != c)).sum(axis=1)
        denom = 2 * tp + fp + fn
        # a class absent from both labels and predictions of a resample is left out of its mean,
        # as scikit-learn's macro average leaves out labels it never sees
        f1s[:, c] = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["macro_f1"] = interval(np.nanmean(f1s, axis=1))
        if positive_index is not None:
            pos = y == positive_index
            hits = int((pos & (pred == positive_index)).sum())
            out["defect_recall"] = exact_interval(hits, int(pos.sum())) if pos.any() else None
    return out


def _validate(y_true: Any, probs: Any, class_names: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names = [str(c) for c in class_names]
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if len(y) == 0:
        raise DefectlensError("no samples to evaluate: the split is empty (check the manifest's split column)")
    if len(names) < 2:
        raise DefectlensError(f"need at least 2 class names, got {names}")
    if p.ndim != 2 or p.shape != (len(y), len(names)):
        raise DefectlensError(
            f"probabilities must have shape (n_samples, n_classes) = ({len(y)}, {len(names)}), got {p.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= len(names):
        raise DefectlensError(f"labels must be class indices in [0, {len(names) - 1}], got values {np.unique(y)[:10]}")
    if not np.all(np.isfinite(p)):
        raise DefectlensError("probabilities contain NaN or infinite values (check the model's logits)")
    return y.astype(np.int64), p, names


def _classification(y: np.ndarray, pred: np.ndarray, names: list[str], present: list[int]) -> dict[str, Any]:
    """Accuracy, F1s, MCC, per-class precision/recall/F1 and the confusion matrix; undefined ratios are 0 (or
    None) and the notes say why."""
    k = len(names)
    labels = list(range(k))
    prec, rec, f1, sup = numeric.precision_recall_f1_support(y, pred, k)
    out: dict[str, Any] = {
        "accuracy": numeric.accuracy(y, pred),
        "balanced_accuracy": numeric.balanced_accuracy(y, pred, k) if len(present) > 1 else None,
        "macro_f1": numeric.f1_average(y, pred, k, average="macro"),
        "weighted_f1": numeric.f1_average(y, pred, k, average="weighted"),
        "mcc": numeric.mcc(y, pred, k),
    }
    out["confusion_matrix"] = numeric.confusion_matrix(y, pred, k).tolist()
    out["per_class"] = [
        {
            "class": names[c],
            "precision": float(prec[c]),
            "recall": float(rec[c]),
            "f1": float(f1[c]),
            "support": int(sup[c]),
        }
        for c in labels
    ]
    return out


def _ranking(y: np.ndarray, p: np.ndarray, positive_index: int | None, notes: list[str]) -> dict[str, Any]:
    """ROC-AUC and PR-AUC: binary on the defect score, multi-class one-vs-rest over classes present."""
    n, k = p.shape
    score_classes = [1 if positive_index is None else positive_index] if k == 2 else list(range(k))
    aucs, aps = [], []
    for c in score_classes:
        yc = (y == c).astype(int)
        if 0 < yc.sum() < n:
            aucs.append(numeric.roc_auc(yc, p[:, c]))
            aps.append(numeric.average_precision(yc, p[:, c]))
    out: dict[str, Any] = {
        "roc_auc": float(np.mean(aucs)) if aucs else None,
        "pr_auc": float(np.mean(aps)) if aps else None,
    }
    if k > 2 and 0 < len(aucs) < k:
        notes.append(f"one-vs-rest ROC-AUC/PR-AUC averaged over the {len(aucs)} classes present with both outcomes")
    if k > 2:
        out["top_k_accuracy"] = {f"top{kk}": numeric.top_k_accuracy(y, p, kk) for kk in (2, 3) if kk < k}
    return out


def _defect_counts(
    y: np.ndarray, pred: np.ndarray, positive_index: int, cost_fn: float, cost_fp: float, notes: list[str]
) -> dict[str, Any]:
    """Confusion counts of the defect class, defect recall/precision, false-alarm rate, expected cost."""
    n = len(y)
    pos = y == positive_index
    tp = int(np.sum(pos & (pred == positive_index)))
    fn = int(np.sum(pos & (pred != positive_index)))
    fp = int(np.sum(~pos & (pred == positive_index)))
    tn = n - tp - fn - fp
    if tp + fn == 0:
        notes.append("no defect samples in this split: defect recall is null")
    if tp + fp == 0:
        notes.append("nothing predicted as defect: defect precision is null")
    if fp + tn == 0:
        notes.append("no good (non-defect) samples in this split: false-alarm rate is null")
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "defect_recall": tp / (tp + fn) if tp + fn else None,
        "defect_precision": tp / (tp + fp) if tp + fp else None,
        "false_alarm_rate": fp / (fp + tn) if fp + tn else None,
        "expected_cost": (cost_fn * fn + cost_fp * fp) / n,
        "cost_fn": float(cost_fn),
        "cost_fp": float(cost_fp),
    }


def compute_metrics(
    y_true: Any,
    probs: Any,
    *,
    class_names: Any,
    positive_index: int | None = None,
    threshold: float | None = None,
    cost_fn: float = 10.0,
    cost_fp: float = 1.0,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of one split, as a JSON-serialisable dict.

    Args:
        y_true: class index per sample.
        probs: calibrated class probabilities, shape (n, K).
        class_names: K names in the probabilities' column order.
        positive_index: the defect class of a binary task (enables defect recall/precision,
            false-alarm rate, expected cost and the threshold rule).
        threshold: binary decision threshold on ``probs[:, positive_index]``; ``None`` means argmax.
        cost_fn: cost of a missed defect; cost_fp: cost of a false alarm (per part, any unit).
        bootstrap: number of resamples for the 95 % intervals (0 turns them off).
        seed: seed of the bootstrap resampling, so intervals are reproducible.

    Raises:
        DefectlensError: if the inputs are empty or malformed.
    """
    y, p, names = _validate(y_true, probs, class_names)
    k, n = len(names), len(y)
    binary = k == 2 and positive_index is not None
    if positive_index is not None and not 0 <= positive_index < k:
        raise DefectlensError(f"positive_index {positive_index} is out of range for {k} classes")
    pred = decide(p, positive_index=positive_index if binary else None, threshold=threshold)
    notes: list[str] = []
    present = sorted(set(y.tolist()))
    if len(present) < k:
        missing = [names[i] for i in range(k) if i not in present]
        notes.append(f"classes absent from the labels of this split: {', '.join(missing)}")
    out: dict[str, Any] = {
        "n": n,
        "class_names": names,
        "positive_class": names[positive_index] if binary and positive_index is not None else None,
        "threshold": threshold if binary else None,
        **_classification(y, pred, names, present),
    }
    if len(present) < 2:
        notes.append("balanced accuracy, ROC-AUC and PR-AUC need at least two classes in the labels; null")
    out.update(_ranking(y, p, positive_index if binary else None, notes))
    out["brier"] = brier(y, p, positive_index=positive_index)
    out["nll"] = nll(y, p)
    rel = reliability_bins(y, p)
    out["ece"], out["mce"] = rel["ece"], rel["mce"]
    if binary and positive_index is not None:
        out.update(_defect_counts(y, pred, positive_index, cost_fn, cost_fp, notes))
    else:
        out["expected_cost"] = None
        notes.append("expected cost per part needs a binary task with a defect class; null")
    out["ci"] = {}
    if bootstrap and bootstrap > 0:
        out["ci"] = _bootstrap(
            y, pred, k=k, positive_index=positive_index if binary else None, n_boot=int(bootstrap), seed=seed
        )
        out["ci_level"] = 0.95
        out["bootstrap"] = {"resamples": int(bootstrap), "seed": int(seed)}
        out["ci_method"] = dict(CI_METHODS)
    out["notes"] = notes
    return {key: (_num(v) if isinstance(v, (float, np.floating)) else v) for key, v in out.items()}
