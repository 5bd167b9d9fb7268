"""Temperature scaling recovers a known over-confidence and lowers NLL and ECE."""

from __future__ import annotations

import numpy as np
import pytest

from defectlens.core.decision import softmax
from defectlens.evaluation.calibration import (
    T_MAX,
    T_MIN,
    calibration_summary,
    choose_temperature,
    fit_temperature,
    separated,
)


def calibrated_logits(n: int = 2000, k: int = 3, seed: int = 0):
    """Logits whose softmax is the true label distribution (labels drawn from it)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, size=(n, k))
    p = softmax(z)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z, y


def test_recovers_scale_of_overconfident_logits():
    z, y = calibrated_logits()
    t = fit_temperature(5.0 * z, y)
    assert t == pytest.approx(5.0, rel=0.15)
    s = calibration_summary(5.0 * z, y, before=1.0, after=t)
    assert s["after"]["nll"] < s["before"]["nll"]
    assert s["after"]["ece"] < s["before"]["ece"]
    assert s["after"]["brier"] < s["before"]["brier"]


def test_already_calibrated_stays_near_one():
    z, y = calibrated_logits(seed=1)
    assert fit_temperature(z, y) == pytest.approx(1.0, abs=0.15)


def test_separable_data_keeps_temperature_finite_and_positive():
    z = np.array([[5.0, -5.0], [-4.0, 4.0], [6.0, -6.0], [-3.0, 3.0]])
    y = np.array([0, 1, 0, 1])
    t = fit_temperature(z, y)
    assert T_MIN <= t <= T_MAX and np.isfinite(t)


def test_separated_validation_gets_the_rule_of_succession_confidence():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    margin = rng.uniform(0.5, 4.0, 400)
    z = np.stack([np.where(y == 0, margin, -margin), np.where(y == 1, margin, -margin)], axis=1)
    assert separated(z, y)
    t, method = choose_temperature(z, y)
    assert method == "rule_of_succession"
    assert T_MIN < t < T_MAX  # not run away to the bound, as the NLL minimiser would
    confidence = softmax(z, t)[np.arange(len(y)), y].mean()
    assert confidence == pytest.approx(401 / 402, abs=1e-6)


def test_one_validation_error_means_the_nll_fit():
    z = np.array([[5.0, -5.0], [-4.0, 4.0], [6.0, -6.0], [1.0, -1.0]])
    y = np.array([0, 1, 0, 1])  # the last row is wrong
    assert not separated(z, y)
    t, method = choose_temperature(z, y)
    assert method == "nll" and t == fit_temperature(z, y)
    grid = np.exp(np.linspace(np.log(T_MIN), np.log(T_MAX), 2001))
    nlls = [-np.log(softmax(z, g)[np.arange(4), y]).mean() for g in grid]
    assert t == pytest.approx(grid[int(np.argmin(nlls))], rel=0.02)
