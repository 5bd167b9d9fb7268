"""Coverage under the gate: how many images the model would judge, and how well it judges those.

Owns :func:`gate_figures`. An evaluation's plain figures are measured on every image; a bundle's gate
(:mod:`defectlens.inference.gate`) sends some frames for review instead of giving them a class, so
these figures say what share of a split it covers, why the rest was flagged, and the accuracy (and,
for a binary task, the defect recall) on the covered images only. Numbers in, numbers out: each
image's finding arrives as the kinds of its reasons (empty: it passed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np


def gate_figures(
    y: np.ndarray, decided: np.ndarray, kinds: Sequence[Sequence[str]], *, positive_index: int | None
) -> dict[str, Any]:
    """Coverage, flagged counts by reason kind, and accuracy and defect recall on the covered images.

    Args:
        y: true class index per image.
        decided: the evaluation's decided class index per image (the same rule as its plain figures).
        kinds: per image, the kinds of the gate's reasons (empty when the gate let it through).
        positive_index: the defect class of a binary task (None: no recall is reported).

    Returns:
        ``images``, ``flagged``, ``covered``, ``coverage`` (covered / images), ``reasons`` (images per
        reason kind, most frequent first; an image with two kinds counts under both),
        ``accuracy_covered``; for a binary task ``defects_covered`` and ``defect_recall_covered``.
        A share with nothing to measure is None.
    """
    y, decided = np.asarray(y), np.asarray(decided)
    covered = np.array([not k for k in kinds], dtype=bool)
    n, n_covered = len(y), int(covered.sum())
    right = decided == y
    out: dict[str, Any] = {
        "images": n,
        "flagged": n - n_covered,
        "covered": n_covered,
        "coverage": n_covered / n if n else None,
        "reasons": dict(Counter(k for ks in kinds for k in dict.fromkeys(ks)).most_common()),
        "accuracy_covered": float(right[covered].mean()) if n_covered else None,
    }
    if positive_index is not None:
        defects = covered & (y == positive_index)
        out["defects_covered"] = int(defects.sum())
        out["defect_recall_covered"] = float(right[defects].mean()) if defects.any() else None
    return out
