"""Anomaly mode's own figures: where in the image the anomaly is (pixel AUROC, PRO), and the image-level
figures a user of an anomaly detector asks for first (recall at 1 % false alarms).

Image-level AUROC, AUPR, F1 and recall at the threshold are the binary classifier's figures
(:mod:`defectlens.evaluation.metrics`): an anomaly model is evaluated as a binary model whose positive
class is every label but the normal one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: PRO is integrated up to this false-positive rate of normal pixels (Bergmann et al., MVTec AD, 2021).
PRO_FPR_LIMIT = 0.3


def recall_at_false_alarms(y: np.ndarray, scores: np.ndarray, rate: float = 0.01) -> float:
    """The share of anomalous images (``y`` true) scored above the threshold that flags ``rate`` of the
    normal ones (the (1 - rate) quantile of their scores, strictly above it)."""
    y, scores = np.asarray(y, bool), np.asarray(scores, np.float64)
    if not y.any() or y.all():
        return float("nan")
    cut = float(np.quantile(scores[~y], 1.0 - rate, method="higher"))
    return float((scores[y] > cut).mean())


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """AUROC of the anomaly maps' pixels against the ground-truth masks (same shape, (N, H, W))."""
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(masks, bool).ravel()
    if not truth.any() or truth.all():
        return float("nan")
    return float(roc_auc_score(truth, np.asarray(maps, np.float32).ravel()))


def pro_score(masks: np.ndarray, maps: np.ndarray, *, limit: float = PRO_FPR_LIMIT, steps: int = 200) -> float:
    """Area under the per-region-overlap curve up to ``limit`` false-positive rate, normalised to [0, 1].

    Each connected defect region counts once whatever its size (a small scratch weighs as much as a
    large dent); at each threshold the PRO is the mean share of each region's pixels above it, and the
    FPR the share of normal pixels above it.
    """
    from scipy import ndimage

    masks, maps = np.asarray(masks, bool), np.asarray(maps, np.float64)
    regions = []  # each region's map values, sorted
    for i, m in enumerate(masks):
        labelled, n = ndimage.label(m)
        regions += [np.sort(maps[i][labelled == k]) for k in range(1, n + 1)]
    normal = np.sort(maps[~masks])
    if not regions or not normal.size:
        return float("nan")
    thresholds = np.quantile(normal, np.linspace(1.0, 1.0 - limit, steps))
    fpr_a = 1.0 - np.searchsorted(normal, thresholds, side="right") / normal.size
    pro_a = np.mean([1.0 - np.searchsorted(r, thresholds, side="right") / r.size for r in regions], axis=0)
    keep = fpr_a <= limit
    return float(np.trapezoid(pro_a[keep], fpr_a[keep]) / limit)


def pixel_metrics(masks: np.ndarray, maps: np.ndarray) -> dict[str, Any]:
    """Pixel AUROC and PRO of anomaly maps against masks (N, H, W), and how many images and regions."""
    return {
        "pixel_auroc": pixel_auroc(masks, maps),
        "pro": pro_score(masks, maps),
        "images": len(masks),
        "defect_pixels": int(np.asarray(masks, bool).sum()),
    }
