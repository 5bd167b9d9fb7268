"""One score per near-duplicate group before the conformal quantile (anomaly mode's good-only threshold)."""

from __future__ import annotations

import numpy as np
import pytest

from defectlens.evaluation.conformal import one_per_group, ood_threshold


def test_each_group_counts_once_at_its_highest_score_in_first_appearance_order():
    out = one_per_group(np.array([0.2, 0.9, 0.4, 0.95, 0.1]), ["a", "b", "a", "b", "c"])
    assert out.tolist() == [0.4, 0.95, 0.1]


def test_images_without_a_group_name_stand_alone():
    assert one_per_group(np.array([0.5, 0.5, 0.7]), ["", "", "x"]).tolist() == [0.5, 0.5, 0.7]


def test_a_duplicated_outlier_no_longer_sets_the_threshold():
    """100 ordinary parts and one unusual part photographed twice, at 2 % false alarms: counted twice, the copies
    set the threshold (the ceil(103 * 0.98) = 101st of 102 scores is a copy); counted once, the highest ordinary
    part does (the ceil(102 * 0.98) = 100th of 101)."""
    scores = np.concatenate([np.linspace(0.0, 1.0, 100), [5.0, 5.0]])
    groups = [f"p{i}" for i in range(100)] + ["dup", "dup"]
    assert ood_threshold(scores, 0.02) == 5.0
    assert ood_threshold(one_per_group(scores, groups), 0.02) == pytest.approx(1.0)


def test_scores_and_names_must_pair_up():
    with pytest.raises(ValueError, match="3 scores but 2 group names"):
        one_per_group(np.zeros(3), ["a", "b"])
