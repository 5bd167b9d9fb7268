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


LN3 = float(np.log(3.0))


@pytest.mark.parametrize(("margin", "expected"), [(LN3, 1.0), (2 * LN3, 2.0), (4 * LN3, 4.0)])
def test_nll_temperature_makes_a_constant_margin_as_confident_as_its_accuracy(margin, expected):
    # every row says class 0 with log-odds ``margin``; 3 of 4 are right, so the NLL is least where
    # sigmoid(margin / T) = 3/4, i.e. margin / T = ln 3
    z = np.tile([margin, 0.0], (4, 1))
    y = np.array([0, 0, 0, 1])
    t, method = choose_temperature(z, y)
    assert method == "nll" and t == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(("margin", "expected"), [(LN3, 1.0), (2 * LN3, 2.0)])
def test_rule_of_succession_temperature_on_a_hand_case(margin, expected):
    # 2 rows, both right with log-odds ``margin``: the target confidence (2+1)/(2+2) = 3/4 is reached where
    # margin / T = ln 3
    z = np.array([[margin, 0.0], [0.0, margin]])
    t, method = choose_temperature(z, np.array([0, 1]))
    assert method == "rule_of_succession" and t == pytest.approx(expected, rel=1e-6)


def test_rule_of_succession_stays_within_the_bounds():
    # no margin at all: confidence 1/2 at any T, under the target 2/3: the smallest T
    assert choose_temperature(np.array([[0.0, 0.0]]), np.array([0])) == (T_MIN, "rule_of_succession")
    # a margin of 1000: still over 2/3 at T = 20 (sigmoid(50)): the largest T
    assert choose_temperature(np.array([[1000.0, 0.0]]), np.array([0])) == (T_MAX, "rule_of_succession")


def test_separated_on_hand_cases():
    assert separated(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 1]))
    assert not separated(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([1, 1]))
    assert separated(np.array([[1.0, 1.0]]), np.array([1]))  # a tie with the label counts as largest
    assert not separated(np.zeros((0, 2)), np.zeros(0))


def test_calibration_summary_on_a_hand_case():
    # two rows right at log-odds ln 3: probability 3/4 at T = 1; at T = 2 it is sqrt(3) / (1 + sqrt(3))
    z = np.array([[LN3, 0.0], [0.0, LN3]])
    s = calibration_summary(z, np.array([0, 1]), before=1.0, after=2.0, positive_index=1)
    p_after = 0.6339745962155613
    assert s["temperature_before"] == 1.0 and s["temperature"] == 2.0 and s["fitted_on"] == "val"
    assert s["before"]["nll"] == pytest.approx(0.2876820724517809)  # -ln(3/4)
    assert s["after"]["nll"] == pytest.approx(0.45574639440832626)  # -ln(p_after)
    assert s["before"]["ece"] == pytest.approx(0.25) and s["before"]["mce"] == pytest.approx(0.25)
    assert s["after"]["ece"] == pytest.approx(1 - p_after)
    assert s["before"]["brier"] == pytest.approx(0.0625)  # (1/4)^2 for each row
    assert s["after"]["brier"] == pytest.approx((1 - p_after) ** 2)
