"""The decision rule on hand cases: the defect class at index 0 and 1, a probability exactly at the
threshold, thresholds 0 and 1, three classes, and the temperature-scaled softmax."""

from __future__ import annotations

import math

import numpy as np
import pytest

from defectlens.core.decision import check_threshold, decide, defect_probability, softmax
from defectlens.core.errors import DefectlensError

# defect probabilities 0.1, 0.25, 0.4, 0.6, 1.0 and 0.0; binary fractions, so "exactly at" is exact
P_DEFECT = np.array([0.1, 0.25, 0.4, 0.6, 1.0, 0.0])


def as_probs(p_defect: np.ndarray, defect_index: int) -> np.ndarray:
    ok = 1.0 - p_defect
    return np.c_[p_defect, ok] if defect_index == 0 else np.c_[ok, p_defect]


@pytest.mark.parametrize("defect_index", [0, 1])
@pytest.mark.parametrize(
    ("threshold", "defect"),
    [
        (0.5, [False, False, False, True, True, False]),
        (0.25, [False, True, True, True, True, False]),  # 0.25 is exactly at the threshold: a defect
        (0.4, [False, False, True, True, True, False]),
        (0.6, [False, False, False, True, True, False]),
        (0.0, [True, True, True, True, True, True]),  # threshold 0: every part, even at p = 0
        (1.0, [False, False, False, False, True, False]),  # threshold 1: only p = 1
    ],
)
def test_binary_rule_with_the_defect_class_at_either_index(defect_index, threshold, defect):
    ok_index = 1 - defect_index
    expected = [defect_index if d else ok_index for d in defect]
    got = decide(as_probs(P_DEFECT, defect_index), positive_index=defect_index, threshold=threshold)
    assert got.tolist() == expected


@pytest.mark.parametrize("defect_index", [0, 1])
def test_threshold_overrules_the_most_probable_class(defect_index):
    # 0.4 is a defect at threshold 0.3 though "ok" is more probable; 0.6 is no defect at threshold 0.7
    low = decide(as_probs(np.array([0.4]), defect_index), positive_index=defect_index, threshold=0.3)
    high = decide(as_probs(np.array([0.6]), defect_index), positive_index=defect_index, threshold=0.7)
    assert low.tolist() == [defect_index] and high.tolist() == [1 - defect_index]


def test_a_probability_one_ulp_under_the_threshold_is_not_a_defect():
    under = np.nextafter(0.3, 0.0)
    assert decide(np.array([[1 - under, under], [0.7, 0.3]]), positive_index=1, threshold=0.3).tolist() == [0, 1]


@pytest.mark.parametrize(("positive_index", "threshold"), [(None, 0.5), (1, None), (None, None)])
def test_without_a_defect_class_or_threshold_the_most_probable_class_wins(positive_index, threshold):
    probs = np.array([[0.7, 0.3], [0.45, 0.55], [0.2, 0.8]])
    assert decide(probs, positive_index=positive_index, threshold=threshold).tolist() == [0, 1, 1]


@pytest.mark.parametrize("positive_index", [None, 0, 2])
@pytest.mark.parametrize("threshold", [None, 0.0, 0.1, 1.0])
def test_three_classes_ignore_the_threshold(positive_index, threshold):
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    assert decide(probs, positive_index=positive_index, threshold=threshold).tolist() == [1, 0, 2, 2]


def test_softmax_with_temperature():
    logits = np.array([[0.0, math.log(3.0)], [math.log(2.0), 0.0], [1000.0, 0.0]])
    assert softmax(logits) == pytest.approx(np.array([[0.25, 0.75], [2 / 3, 1 / 3], [1.0, 0.0]]))
    # T = 2 halves the log-odds: 3 to 1 becomes sqrt(3) to 1
    r3 = math.sqrt(3.0)
    assert softmax(logits[:1], 2.0) == pytest.approx(np.array([[1 / (1 + r3), r3 / (1 + r3)]]))
    assert softmax(np.array([[1.0, 2.0, 3.0]]), 1e6) == pytest.approx(np.array([[1 / 3, 1 / 3, 1 / 3]]), abs=1e-6)


def test_float32_logits_give_float64_probabilities():
    # logits as an ONNX model returns them. The defect probability 1 / (1 + e^-20) = 1 - 2.1e-9 rounds to
    # exactly 1.0 in float32, which a threshold of 1.0 would call a defect; in float64 it stays below 1.
    probs = softmax(np.array([[0.0, 20.0]], dtype=np.float32))
    assert probs.dtype == np.float64
    assert probs[0, 1] == pytest.approx(1 / (1 + math.exp(-20.0)), rel=1e-12, abs=0) and probs[0, 1] < 1.0
    assert decide(probs, positive_index=1, threshold=1.0).tolist() == [0]


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, 1.0, np.float32(0.25), np.float64(1.0), np.int64(0)])
def test_check_threshold_passes_every_probability_through_as_a_float(value):
    checked = check_threshold(value)
    assert type(checked) is float and checked == float(value)
    assert check_threshold(None) is None  # no override: the spec's own threshold applies


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "threshold must be in [0, 1], got nan"),
        (float("inf"), "threshold must be in [0, 1], got inf"),
        (-0.01, "threshold must be in [0, 1], got -0.01"),
        (1.0000001, "threshold must be in [0, 1], got 1.0000001"),
        (7.0, "threshold must be in [0, 1], got 7.0"),
        (True, "threshold must be a number in [0, 1], got True"),
        ("0.5", "threshold must be a number in [0, 1], got '0.5'"),
        ([0.5], "threshold must be a number in [0, 1], got [0.5]"),
    ],
)
def test_check_threshold_refuses_what_would_silently_pass_every_part(value, message):
    with pytest.raises(DefectlensError) as info:
        check_threshold(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("probabilities", "class_names", "positive", "expected"),
    [
        ({"defect": 0.8, "ok": 0.2}, ("defect", "ok"), "defect", 0.8),  # defect first
        ({"ok": 0.7, "defect": 0.3}, ("ok", "defect"), "defect", 0.3),  # defect second, not the predicted class
        ({"ok": 0.7, "defect": 0.3}, ("ok", "defect"), None, None),  # no defect class named
        ({"a": 0.5, "b": 0.3, "c": 0.2}, ("a", "b", "c"), "b", None),  # three classes: no single number
        ({}, ("ok", "defect"), "defect", None),  # an error or a frame sent for review has no probabilities
    ],
)
def test_defect_probability_is_the_defect_class_of_a_binary_model_only(probabilities, class_names, positive, expected):
    got = defect_probability(probabilities, class_names=class_names, positive_class=positive)
    assert got == expected and (got is None or type(got) is float)
