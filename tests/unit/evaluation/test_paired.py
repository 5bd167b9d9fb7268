"""The paired comparison's numbers: the exact McNemar p-value held to SciPy's binomial test, the 2x2 table,
each model's figures by hand, and the promotion rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta, binomtest

from defectlens.evaluation.paired import KEEP, PROMOTE, PairedTable, mcnemar_exact, model_figures, paired_table, verdict

CASES = [(0, 0), (0, 1), (1, 0), (0, 6), (6, 0), (1, 5), (3, 3), (2, 9), (10, 4), (17, 5), (40, 41), (0, 120), (70, 50)]


@pytest.mark.parametrize(("b", "c"), CASES)
def test_mcnemar_is_scipys_two_sided_exact_binomial_test(b, c):
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_mcnemar_small_cases_by_hand():
    assert mcnemar_exact(0, 6) == 2 / 64  # both tails of 0 or 6 heads in 6 fair tosses
    assert mcnemar_exact(1, 5) == 2 * 7 / 64
    assert mcnemar_exact(2, 2) == 1.0
    with pytest.raises(ValueError, match="b=-1"):
        mcnemar_exact(-1, 2)


def test_paired_table_counts_each_cell():
    champion = [True, True, True, False, False, True, False]
    challenger = [True, False, False, True, False, True, False]
    t = paired_table(champion, challenger)
    assert t == PairedTable(n=7, both_right=2, champion_only=2, challenger_only=1, both_wrong=2, p_value=1.0)
    with pytest.raises(ValueError, match="different images"):
        paired_table([True], [True, False])


def test_model_figures_by_hand():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    called = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0], bool)
    right = truth == called
    f = model_figures(truth, called, right, cost_fn=10.0, cost_fp=1.0)
    assert f["accuracy"]["value"] == 0.8 and f["accuracy"]["k"] == 8
    assert f["defect_recall"]["value"] == 0.75 and f["defect_recall"]["n"] == 4
    assert f["false_alarm_rate"]["value"] == pytest.approx(1 / 6)
    assert f["expected_cost"]["value"] == pytest.approx((10 * 1 + 1 * 1) / 10)
    lo, hi = f["defect_recall"]["ci"]  # Clopper-Pearson: beta quantiles of 3 of 4
    assert lo == pytest.approx(beta.ppf(0.025, 3, 2)) and hi == pytest.approx(beta.ppf(0.975, 4, 1))
    clo, chi = f["expected_cost"]["ci"]
    assert 0.0 <= clo <= 1.1 <= chi


def test_model_figures_without_a_good_class_give_no_defect_figures():
    f = model_figures(None, None, [True, False], cost_fn=10.0, cost_fp=1.0)
    assert f["accuracy"]["value"] == 0.5
    assert f["defect_recall"]["value"] is None and f["expected_cost"] is None


def table(b: int, c: int) -> PairedTable:
    return PairedTable(n=50 + b + c, both_right=50, champion_only=b, challenger_only=c, both_wrong=0,
                       p_value=mcnemar_exact(b, c))  # fmt: skip


def test_verdict_keeps_the_champion_when_the_challenger_misses_more_defects():
    v = verdict(table(0, 0), 0.9, 0.8)
    assert v["decision"] == KEEP and "0.8000 < champion's 0.9000" in v["reasons"][0]


def test_verdict_keeps_the_champion_when_the_paired_test_shows_the_challenger_worse():
    v = verdict(table(8, 0), 0.9, 0.9)
    assert v["decision"] == KEEP and "shows the challenger worse" in v["reasons"][1]


def test_verdict_promotes_a_challenger_significantly_better_or_no_different():
    assert verdict(table(0, 8), 0.9, 0.95)["decision"] == PROMOTE
    assert verdict(table(3, 1), 0.9, 0.9)["decision"] == PROMOTE  # worse, but not shown so (p = 0.625)
    assert verdict(table(0, 0), None, None)["decision"] == PROMOTE


def test_verdict_keeps_the_champion_when_no_image_was_decided_by_both():
    empty = PairedTable(n=0, both_right=0, champion_only=0, challenger_only=0, both_wrong=0, p_value=1.0)
    v = verdict(empty, None, None)
    assert v["decision"] == KEEP and "no image was decided by both" in v["reasons"][0]
