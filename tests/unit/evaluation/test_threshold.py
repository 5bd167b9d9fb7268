"""Operating-threshold policies on hand cases."""

from __future__ import annotations

import re

import numpy as np
import pytest

from defectlens.core.errors import DefectlensError
from defectlens.evaluation.threshold import choose_threshold, f1_decisions, threshold_sweep

Y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
P = np.array([0.05, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9])


def test_sweep_counts():
    rows = {round(r["threshold"], 6): r for r in threshold_sweep(Y, P, cost_fn=10, cost_fp=1)}
    r = rows[0.475]  # halfway between the scores 0.35 and 0.6: 0.6 and above are called defects
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (3, 1, 1, 3)
    assert r["cost"] == pytest.approx((10 * 1 + 1) / 8)


def test_recall_target_is_highest_threshold_reaching_it():
    c = choose_threshold(Y, P, method="recall", target_recall=1.0)
    # the lowest defect scores 0.35: the threshold sits halfway to the next lower score, 0.3
    assert c.threshold == pytest.approx(0.325) and "recall" in c.reason


def test_clean_separation_keeps_a_margin_on_both_sides():
    # every OK part below 0.55, every defect at 0.95 or above: any threshold in (0.55, 0.95] is perfect,
    # and the chosen one must not sit on the lowest defect's score
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.3, 0.55, 0.95, 0.97, 0.99])
    for method in ("f1", "cost"):
        assert choose_threshold(y, p, method=method).threshold == pytest.approx(0.75)
    assert choose_threshold(y, p, method="recall", target_recall=1.0).threshold == pytest.approx(0.75)


def test_cost_weighs_missed_defects():
    # catching the defect scored 0.35 costs one extra false alarm (0.6): worth it only when misses are dear
    cheap_miss = choose_threshold(Y, P, method="cost", cost_fn=1, cost_fp=10)
    dear_miss = choose_threshold(Y, P, method="cost", cost_fn=10, cost_fp=1)
    assert dear_miss.threshold <= 0.35 < cheap_miss.threshold


def test_f1_and_no_defects():
    assert choose_threshold(Y, P, method="f1").sweep
    with pytest.raises(DefectlensError, match="no defect"):
        choose_threshold(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(DefectlensError, match="unknown threshold method"):
        choose_threshold(Y, P, method="magic")


def test_sweep_candidates_are_the_lowest_score_the_midpoints_and_half():
    thresholds = [r["threshold"] for r in threshold_sweep(Y, P)]
    assert thresholds == pytest.approx([0.05, 0.125, 0.25, 0.325, 0.475, 0.5, 0.65, 0.75, 0.85])


def test_f1_picks_the_best_f1_threshold():
    # F1 at each candidate, by hand: 0.05 8/12, 0.125 8/11, 0.25 8/10, 0.325 8/9, 0.475 and 0.5 6/8,
    # 0.65 6/7, 0.75 4/6, 0.85 2/5: the best is 0.325 (every defect caught, one false alarm)
    c = choose_threshold(Y, P)
    assert c.method == "f1" and c.threshold == pytest.approx(0.325)
    assert "F1=0.8889" in c.reason


def test_f1_tie_is_broken_towards_half():
    # candidates 0.1, 0.25, 0.5, 0.55, 0.8: F1 4/6 at 0.1 (all called defects) and at 0.8 (only 0.9);
    # 0.8 is the nearer to 0.5
    y = np.array([1, 0, 0, 1])
    p = np.array([0.1, 0.4, 0.7, 0.9])
    assert choose_threshold(y, p, method="f1").threshold == pytest.approx(0.8)


def test_cost_tie_is_broken_towards_half():
    # equal costs; candidates 0.1, 0.2, 0.5, 0.55, 0.85: mean cost 1/4 at 0.2 (one false alarm, 0.8)
    # and at 0.85 (one missed defect, 0.3), 2/4 elsewhere; 0.2 is the nearer to 0.5
    y = np.array([0, 1, 0, 1])
    p = np.array([0.1, 0.3, 0.8, 0.9])
    c = choose_threshold(y, p, method="cost", cost_fn=1, cost_fp=1)
    assert c.threshold == pytest.approx(0.2) and "mean cost 0.2500" in c.reason


def test_half_wins_a_tie_it_is_part_of():
    # every score above 0.5: 0.5 decides like the lowest score 0.6 (all defects: F1 4/5, the best; 0.65 gives
    # 2/4, 0.75 gives 2/3) and is nearer to itself
    y = np.array([1, 0, 1])
    p = np.array([0.6, 0.7, 0.8])
    assert choose_threshold(y, p, method="f1").threshold == 0.5
    assert choose_threshold(y, p, method="cost", cost_fn=10, cost_fp=1).threshold == 0.5


def test_recall_when_the_lowest_score_is_a_defect():
    # only the lowest score itself (0.1: everything a defect) catches the defect scored 0.1
    y = np.array([1, 0, 0, 1])
    p = np.array([0.1, 0.4, 0.7, 0.9])
    full = choose_threshold(y, p, method="recall", target_recall=1.0)
    assert full.threshold == pytest.approx(0.1) and "recall=1.0000, precision=0.5000" in full.reason
    # half the defects: the highest candidate still catching 0.9 is 0.8
    assert choose_threshold(y, p, method="recall", target_recall=0.5).threshold == pytest.approx(0.8)


def test_sweep_decides_at_or_above_like_decide():
    rows = threshold_sweep(np.array([1, 0, 1]), np.array([0.3, 0.3, 0.7]))
    at_lowest = rows[0]  # threshold 0.3: both parts scored exactly 0.3 are called defects
    assert at_lowest["threshold"] == 0.3 and (at_lowest["tp"], at_lowest["fp"], at_lowest["fn"]) == (2, 1, 0)


def test_f1_decisions_with_the_defect_class_first():
    # class 0 is the defect; its probabilities 0.1, 0.4, 0.7, 0.9 are the tie case above: threshold 0.8
    probs = np.array([[0.1, 0.9], [0.4, 0.6], [0.7, 0.3], [0.9, 0.1]])
    y = np.array([0, 1, 1, 0])
    decisions, threshold = f1_decisions(probs, y, positive=0)
    assert threshold == pytest.approx(0.8) and decisions.tolist() == [1, 1, 1, 0]


def raises_exactly(message: str):
    """pytest.raises for a DefectlensError whose whole message is ``message`` (what the user reads)."""
    return pytest.raises(DefectlensError, match=f"^{re.escape(message)}$")


def test_default_costs_weigh_a_miss_and_a_false_alarm_alike():
    # Y, P by hand: false alarms 4 3 2 1 1 1 0 0 0 and missed defects 0 0 0 0 1 1 1 2 3 at the candidates
    # 0.05 0.125 0.25 0.325 0.475 0.5 0.65 0.75 0.85; each counts 1, over 8 parts
    costs = [r["cost"] for r in threshold_sweep(Y, P)]
    assert costs == pytest.approx([4 / 8, 3 / 8, 2 / 8, 1 / 8, 2 / 8, 2 / 8, 1 / 8, 2 / 8, 3 / 8])
    # 1/8 at 0.325 (one false alarm) and at 0.65 (one miss): 0.65 is the nearer to 0.5
    c = choose_threshold(Y, P, method="cost")
    assert c.threshold == pytest.approx(0.65)
    assert c.reason == "minimises expected cost on validation (cost FN=1, FP=1; mean cost 0.1250 per part)"


def test_cost_of_a_false_alarm_reaches_the_sweep():
    # a false alarm a quarter of a miss: catching the defect scored 0.35 at the price of the false alarm 0.6
    # (0.325: 0.25/8) beats missing it (0.65: 1/8)
    c = choose_threshold(Y, P, method="cost", cost_fn=1, cost_fp=0.25)
    assert [r["cost"] for r in c.sweep] == pytest.approx(
        [1 / 8, 0.75 / 8, 0.5 / 8, 0.25 / 8, 1.25 / 8, 1.25 / 8, 1 / 8, 2 / 8, 3 / 8]
    )
    assert c.threshold == pytest.approx(0.325) and "FN=1, FP=0.25" in c.reason


@pytest.mark.parametrize("target", [0.0, -0.5, 1.0 + 1e-9, 1.5, 2.0])
def test_recall_target_outside_zero_to_one_is_refused(target):
    with raises_exactly(f"target recall must be in (0, 1], got {target}"):
        choose_threshold(Y, P, method="recall", target_recall=target)


def test_error_messages_say_what_was_wrong():
    with raises_exactly("unknown threshold method 'magic'; choose one of f1, recall, cost"):
        choose_threshold(Y, P, method="magic")
    with raises_exactly("validation set has no defect samples: cannot choose a defect threshold"):
        choose_threshold(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4]))
    with raises_exactly("cannot choose a threshold on an empty set"):
        threshold_sweep(np.array([]), np.array([]))


@pytest.mark.parametrize(
    ("y", "p", "shapes"),
    [
        (np.array([0, 1, 1]), np.array([0.2, 0.8]), "(3,) and (2,)"),  # unequal lengths
        (np.array([[0, 1], [1, 0]]), np.array([[0.2, 0.8], [0.7, 0.1]]), "(2, 2) and (2, 2)"),  # equal but 2-D
        (np.array([[0, 1]]), np.array([0.2, 0.8]), "(1, 2) and (2,)"),
    ],
)
def test_labels_and_scores_must_be_one_dimensional_and_aligned(y, p, shapes):
    with raises_exactly(f"y_true and p_pos must be 1-D of equal length, got {shapes}"):
        threshold_sweep(y, p)


def test_a_single_sample_is_enough():
    # candidates 0.5 and the score 0.7: both call the one defect a defect
    rows = threshold_sweep(np.array([1]), np.array([0.7]))
    assert [(r["threshold"], r["tp"], r["fp"], r["fn"], r["tn"]) for r in rows] == [
        (0.5, 1, 0, 0, 0),
        (0.7, 1, 0, 0, 0),
    ]
    assert choose_threshold(np.array([1]), np.array([0.7])).threshold == 0.5


def test_ratios_without_a_denominator():
    # nothing called a defect (threshold 0.5, every score below it): precision counts as 1, recall and F1 as 0
    rows = threshold_sweep(np.array([0, 1]), np.array([0.1, 0.3]))
    assert [(r["threshold"], r["precision"], r["recall"], r["f1"]) for r in rows] == [
        pytest.approx(row) for row in [(0.1, 0.5, 1.0, 2 / 3), (0.2, 1.0, 1.0, 1.0), (0.5, 1.0, 0.0, 0.0)]
    ]
    # no defects at all: recall counts as 1; F1 is 1 only where nothing is called a defect either
    rows = threshold_sweep(np.array([0, 0]), np.array([0.1, 0.3]))
    assert [(r["threshold"], r["precision"], r["recall"], r["f1"], r["cost"]) for r in rows] == [
        pytest.approx(row) for row in [(0.1, 0.0, 1.0, 0.0, 1.0), (0.2, 0.0, 1.0, 0.0, 0.5), (0.5, 1.0, 1.0, 1.0, 0.0)]
    ]


def test_neighbouring_float32_scores_still_get_a_threshold_between_them():
    # scores as a float32 model gives them: 0.25 and the next float32 up, 0.25 + 2**-25. Their midpoint,
    # 0.25 + 2**-26, exists only in float64 (in float32 it rounds back to 0.25, and the two parts would share
    # every threshold); it is the one candidate that separates them.
    low = np.float32(0.25)
    p = np.array([low, np.nextafter(low, np.float32(1.0))])
    y = np.array([0, 1])
    rows = threshold_sweep(y, p)
    assert [r["threshold"] for r in rows] == [0.25, 0.25 + 2**-26, 0.5]
    assert (rows[1]["tp"], rows[1]["fp"], rows[1]["fn"], rows[1]["tn"]) == (1, 0, 0, 1)
    assert choose_threshold(y, p).threshold == 0.25 + 2**-26


def test_choice_as_a_dict():
    # candidates 0.2 (both called defects) and 0.5 (the midpoint, also the fixed candidate): 0.5 is perfect
    c = choose_threshold(np.array([0, 1]), np.array([0.2, 0.8]))
    assert c.to_dict() == {
        "threshold": 0.5,
        "method": "f1",
        "reason": "maximises defect F1 on validation (F1=1.0000)",
        "sweep": [
            {
                "threshold": 0.2,
                "tp": 1,
                "fp": 1,
                "fn": 0,
                "tn": 0,
                "precision": 0.5,
                "recall": 1.0,
                "f1": 2 / 3,
                "cost": 0.5,
            },
            {
                "threshold": 0.5,
                "tp": 1,
                "fp": 0,
                "fn": 0,
                "tn": 1,
                "precision": 1.0,
                "recall": 1.0,
                "f1": 1.0,
                "cost": 0.0,
            },
        ],
    }
