"""Thresholds that bound a false-alarm rate from in-distribution scores alone.

Two users: the gate's out-of-distribution threshold (:mod:`defectlens.export.profile`) and anomaly
mode's operating threshold when validation holds only normal images (never "every image anomalous":
the threshold is set where at most ``rate`` of normal parts would be flagged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def ood_threshold(scores: np.ndarray, rate: float) -> float:
    """The score above which at most ``rate`` of in-distribution images fall, from validation scores.

    The conformal quantile: the ceil((n + 1)(1 - rate))-th smallest score, so a new in-distribution
    image is flagged with probability at most ``rate``. With fewer validation images than that rank
    needs (n < (1 - rate) / rate: 199 at 0.005) no validation score certifies the rate, and
    the largest would flag about 1 in n + 1 healthy frames; the threshold is then the normal prediction
    bound for one new score, mean + t(1 - rate, n - 1) * std * sqrt(1 + 1 / n) (wide when n is small),
    and never below the largest validation score (:func:`threshold_rule` says which rule applied).
    """
    from scipy.stats import t

    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    k = math.ceil((n + 1) * (1.0 - rate))
    if k <= n:
        return float(s[k - 1])
    bound = float(s.mean()) + float(t.ppf(1.0 - rate, n - 1)) * float(s.std(ddof=1)) * math.sqrt(1.0 + 1.0 / n)
    return max(float(s[-1]), bound)


def one_per_group(scores: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """One score per group of near-duplicate images (the manifest's ``group``: copies of one part, found by the
    import's perceptual hash), its largest. The conformal quantile counts its scores as exchangeable draws of what a
    new part scores; two copies of one part are one draw, and counted twice they set the threshold where a single
    unusual part put it (an empty group name is a group of its own). Order: the groups' first appearances.

    Example:
        >>> one_per_group(np.array([0.1, 0.9, 0.88, 0.3]), ["a", "b", "b", ""]).tolist()
        [0.1, 0.9, 0.3]
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(groups):
        raise ValueError(f"{len(scores)} scores but {len(groups)} group names")
    best: dict[str, float] = {}
    for i, (score, group) in enumerate(zip(scores.tolist(), groups, strict=True)):
        key = group or f"\0{i}"  # ungrouped: alone
        best[key] = max(best.get(key, -math.inf), score)
    return np.fromiter(best.values(), dtype=np.float64, count=len(best))


def threshold_rule(n: int, rate: float) -> str:
    """How :func:`ood_threshold` sets the threshold for ``n`` validation scores."""
    if math.ceil((n + 1) * (1.0 - rate)) <= n:
        return "conformal"
    return "gaussian"
