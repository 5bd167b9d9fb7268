"""Temperature scaling: one scalar T fitted on validation logits so softmax(logits / T) is honest.

Owns :func:`choose_temperature` (the policy below), :func:`fit_temperature` (torch LBFGS on the
NLL, parametrised as T = exp(log T) so T stays positive) and :func:`calibration_summary` (ECE, MCE,
Brier and NLL before and after). Temperature scaling never changes the argmax, so accuracy is
untouched; only confidences move.

When validation is classified without a single error (common on easy inspection sets such as
casting), the NLL keeps falling as T goes to 0: the maximum-likelihood temperature does not exist,
and fitting it anyway makes every later mistake a near-certain one. Then T is set instead so that the
mean validation confidence equals the expected accuracy after n correct of n under a uniform prior,
(n + 1) / (n + 2) (Laplace's rule of succession): as confident as the evidence allows, no more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from defectlens.core.decision import softmax
from defectlens.core.errors import DefectlensError
from defectlens.evaluation.metrics import brier, nll, reliability_bins

# Outside this range the fit has run away.
T_MIN, T_MAX = 0.05, 20.0


def separated(logits: np.ndarray, y_true: np.ndarray) -> bool:
    """True when every row's label has the largest logit: the NLL then only falls as T goes to 0."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    return len(y) > 0 and bool(np.all(z[np.arange(len(y)), y] >= z.max(axis=1)))


def _succession_temperature(z: np.ndarray, y: np.ndarray) -> float:
    """T whose mean validation confidence is (n + 1) / (n + 2), by bisection on log T."""
    n = len(y)
    target = (n + 1) / (n + 2)

    def confidence(t: float) -> float:
        return float(softmax(z, t)[np.arange(n), y].mean())

    lo, hi = np.log(T_MIN), np.log(T_MAX)  # confidence falls as T grows
    if confidence(T_MIN) <= target:
        return T_MIN
    if confidence(T_MAX) >= target:
        return T_MAX
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if confidence(float(np.exp(mid))) > target:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, *, max_iter: int = 100) -> float:
    """The temperature minimising the mean NLL of ``y_true`` under ``softmax(logits / T)``.

    Args:
        logits: raw logits (n, K) on validation data.
        y_true: class index per row.
        max_iter: LBFGS iterations.

    Returns:
        T clipped to [0.05, 20]; 1.0 if the optimiser produced a non-finite value.

    Raises:
        DefectlensError: if there are no samples or shapes disagree.
    """
    import torch

    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(y_true, dtype=np.int64))
    if z.ndim != 2 or z.shape[0] != y.shape[0] or z.shape[0] == 0:
        raise DefectlensError(f"cannot fit a temperature: logits {tuple(z.shape)} vs labels {tuple(y.shape)}")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.exp().item())
    if not np.isfinite(t):
        return 1.0
    return float(np.clip(t, T_MIN, T_MAX))


def _scores(y: np.ndarray, probs: np.ndarray, positive_index: int | None) -> dict[str, float]:
    rel = reliability_bins(y, probs)
    return {
        "ece": rel["ece"],
        "mce": rel["mce"],
        "brier": brier(y, probs, positive_index=positive_index),
        "nll": nll(y, probs),
        "bins": rel["bins"],
    }


def choose_temperature(logits: np.ndarray, y_true: np.ndarray) -> tuple[float, str]:
    """The validation temperature and how it was chosen: ``"nll"`` (:func:`fit_temperature`), or
    ``"rule_of_succession"`` when validation is :func:`separated` and the NLL has no minimum."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(y_true, dtype=np.int64)
    if separated(z, y):
        return _succession_temperature(z, y), "rule_of_succession"
    return fit_temperature(z, y), "nll"


def calibration_summary(
    logits: np.ndarray,
    y_true: np.ndarray,
    *,
    before: float,
    after: float,
    positive_index: int | None = None,
    fitted_on: str = "val",
) -> dict[str, Any]:
    """ECE, MCE, Brier and NLL with temperature ``before`` and ``after``, with reliability bins."""
    y = np.asarray(y_true, dtype=np.int64)
    return {
        "fitted_on": fitted_on,
        "temperature_before": float(before),
        "temperature": float(after),
        "before": _scores(y, softmax(logits, before), positive_index),
        "after": _scores(y, softmax(logits, after), positive_index),
    }
