"""Choosing the operating threshold of a binary inspector, on validation data only.

Three policies: the threshold that maximises F1 of the defect class, the highest threshold that
still reaches a target defect recall (missed defects are what cost most on a line), or the one
that minimises expected cost given the cost of a missed defect (FN) and of a false alarm (FP).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from defectlens.core.decision import THRESHOLD_METHODS as METHODS
from defectlens.core.decision import decide
from defectlens.core.errors import DefectlensError


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold, how it was chosen, and the sweep behind it."""

    threshold: float
    method: str
    reason: str
    sweep: list[dict[str, float]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def threshold_sweep(
    y_true: np.ndarray, p_pos: np.ndarray, *, cost_fn: float = 1.0, cost_fp: float = 1.0
) -> list[dict[str, float]]:
    """Confusion counts, precision, recall, F1 and mean cost at every distinct candidate threshold.

    A sample is predicted positive when ``p_pos >= threshold``. Candidates are every point where
    the decision changes, placed halfway between neighbouring distinct scores (so a chosen
    threshold keeps an equal margin to the validation samples on both sides instead of sitting on
    one sample's score), the lowest score (everything positive) and 0.5.
    """
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(p_pos, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise DefectlensError(f"y_true and p_pos must be 1-D of equal length, got {y.shape} and {p.shape}")
    if len(y) == 0:
        raise DefectlensError("cannot choose a threshold on an empty set")
    scores = np.unique(p)
    candidates = np.unique(np.concatenate([scores[:1], (scores[:-1] + scores[1:]) / 2, [0.5]]))
    rows = []
    n = len(y)
    for t in candidates:
        pred = p >= t
        tp = int(np.sum(pred & y))
        fp = int(np.sum(pred & ~y))
        fn = int(np.sum(~pred & y))
        tn = n - tp - fp - fn
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        rows.append(
            {
                "threshold": float(t),
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "tn": tn,
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "cost": (cost_fn * fn + cost_fp * fp) / n,
            }
        )
    return rows


def choose_threshold(
    y_true: np.ndarray,
    p_pos: np.ndarray,
    *,
    method: str = "f1",
    target_recall: float = 0.99,
    cost_fn: float = 1.0,
    cost_fp: float = 1.0,
) -> ThresholdChoice:
    """Pick the operating threshold on validation labels ``y_true`` (1 = defect) and scores ``p_pos``.

    Ties are broken towards the threshold closest to 0.5. Every candidate lies halfway between two
    neighbouring validation scores, so even a clean separation far from 0.5 keeps a margin on both
    sides (the highest candidate reaching a recall target sits below the last defect it must catch).
    """
    if method not in METHODS:
        raise DefectlensError(f"unknown threshold method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0.0 < target_recall <= 1.0:
        raise DefectlensError(f"target recall must be in (0, 1], got {target_recall}")
    sweep = threshold_sweep(y_true, p_pos, cost_fn=cost_fn, cost_fp=cost_fp)
    if not np.any(np.asarray(y_true)):
        raise DefectlensError("validation set has no defect samples: cannot choose a defect threshold")

    def near_half(row: dict[str, float]) -> float:
        return -abs(row["threshold"] - 0.5)

    if method == "f1":
        best = max(sweep, key=lambda r: (r["f1"], near_half(r)))
        reason = f"maximises defect F1 on validation (F1={best['f1']:.4f})"
    elif method == "cost":
        best = max(sweep, key=lambda r: (-r["cost"], near_half(r)))
        reason = (
            f"minimises expected cost on validation (cost FN={cost_fn:g}, FP={cost_fp:g}; "
            f"mean cost {best['cost']:.4f} per part)"
        )
    else:
        reaching = [r for r in sweep if r["recall"] >= target_recall]
        best = max(reaching, key=lambda r: (r["threshold"], near_half(r)))
        reason = (
            f"highest threshold reaching defect recall >= {target_recall:g} on validation "
            f"(recall={best['recall']:.4f}, precision={best['precision']:.4f})"
        )
    return ThresholdChoice(threshold=float(best["threshold"]), method=method, reason=reason, sweep=sweep)


def f1_decisions(probs: np.ndarray, y: np.ndarray, positive: int) -> tuple[np.ndarray, float]:
    """Decisions of a binary split at the threshold that maximises its own defect F1.

    Training ranks epochs with this (``val_decisions``): a model whose defect scores separate the
    classes well is not penalised for a miscalibrated 0.5.
    """
    choice = choose_threshold((np.asarray(y) == positive).astype(int), probs[:, positive], method="f1")
    return decide(probs, positive_index=positive, threshold=choice.threshold), choice.threshold
