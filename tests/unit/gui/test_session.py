"""The batch: threshold re-labelling by hand, FN/FP at a threshold, filters, navigation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from defectlens.core.errors import DefectlensError
from defectlens.gui.session import Session
from defectlens.inference.predictor import Prediction

# (ground truth, defect probability): 3 defects, 3 good parts, one unreadable file
CASES = [("defect", 0.9), ("defect", 0.6), ("defect", 0.2), ("ok", 0.7), ("ok", 0.3), ("ok", 0.1)]


def prediction(name: str, p_defect: float) -> Prediction:
    probs = {"ok": 1.0 - p_defect, "defect": p_defect}
    label = max(probs, key=probs.__getitem__)
    return Prediction(name, label, probs[label], probs, 0.5, 2.0)


def make_session(threshold: float = 0.5, **kw) -> Session:
    session = Session(("ok", "defect"), positive_class="defect", threshold=threshold, seed=0, **kw)
    files = [Path(f"{t}/{i}.png") for i, (t, _) in enumerate(CASES)] + [Path("defect/broken.png")]
    session.set_inputs(files, {f: f.parent.name for f in files})
    for i, (_, p) in enumerate(CASES):
        session.apply(i, prediction(str(files[i]), p))
    session.apply(len(CASES), Prediction.error("defect/broken.png", "not an image file"))
    return session


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [  # a defect (1) where the defect probability 0.9, 0.6, 0.2, 0.7, 0.3, 0.1 reaches the threshold
        (0.0, [1, 1, 1, 1, 1, 1]),
        (0.15, [1, 1, 1, 1, 1, 0]),
        (0.5, [1, 1, 0, 1, 0, 0]),
        (0.6, [1, 1, 0, 1, 0, 0]),  # 0.6 exactly at the threshold is a defect
        (0.65, [1, 0, 0, 1, 0, 0]),
        (0.95, [0, 0, 0, 0, 0, 0]),
        (1.0, [0, 0, 0, 0, 0, 0]),
    ],
)
def test_relabelling_by_hand(threshold, expected):
    session = make_session(threshold)
    assert session.decisions()[: len(CASES)].tolist() == expected
    assert session.decisions()[-1] == -1  # the unreadable file has no decision
    assert [session.view(i).prediction for i in range(len(CASES))] == [("ok", "defect")[k] for k in expected]


def test_relabelling_a_random_batch_with_the_positive_class_first():
    rng = np.random.default_rng(1)
    session = Session(("good", "bad"), positive_class="good", threshold=0.3)
    p_good = rng.random(50)
    session.set_inputs([Path(f"{i}.png") for i in range(50)])
    for i, p in enumerate(p_good):
        session.apply(i, Prediction(f"{i}.png", "good", p, {"good": p, "bad": 1 - p}, 0.3, 1.0))
    for t in (0.1, 0.3, 0.77):
        session.set_threshold(t)
        expected = np.where(p_good >= t, 0, 1)  # the positive class "good" is class 0
        assert np.array_equal(session.decisions(), expected)


def test_fn_fp_accuracy_and_cost_at_a_threshold():
    session = make_session(0.5, costs=(10.0, 1.0))
    m = session.metrics()
    # at 0.5: defects 0.9, 0.6 caught, 0.2 missed; the good part at 0.7 is a false alarm
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 2)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["expected_cost"] == pytest.approx((10 * 1 + 1 * 1) / 6)
    session.set_threshold(0.15)
    m = session.metrics()
    assert (m["fn"], m["fp"]) == (0, 2)
    assert m["expected_cost"] == pytest.approx(2 / 6)


def test_metrics_need_labels():
    session = Session(("ok", "defect"), positive_class="defect", threshold=0.5)
    session.set_inputs([Path("a.png")])
    session.apply(0, prediction("a.png", 0.8))
    assert session.metrics() is None


def test_filters():
    session = make_session(0.5)
    assert session.select("all") == list(range(7))
    assert session.select("mistakes") == [2, 3]
    assert session.select("missed") == [2]
    assert session.select("false_alarms") == [3]
    assert session.select("errors") == [6]
    session.set_threshold(0.95)  # everything is called ok: all three defects are missed
    assert session.select("missed") == [0, 1, 2]
    assert session.select("false_alarms") == []
    with pytest.raises(DefectlensError, match="unknown filter"):
        session.set_filter("nope")


def test_without_a_positive_class_the_most_probable_class_wins():
    session = make_session(0.5)
    session.set_positive_class(None)
    assert not session.uses_threshold
    assert session.decisions()[:6].tolist() == [1, 1, 0, 1, 0, 0]
    assert session.select("missed") == [] and session.select("mistakes") == [2, 3]


def test_navigation_within_a_filter():
    session = make_session(0.5)
    assert session.position == 0
    assert session.go_prev() == 0  # stays at the first image
    assert [session.go_next() for _ in range(7)] == [1, 2, 3, 4, 5, 6, 6]
    session.set_filter("mistakes")  # 6 is not a mistake: jump to the first one
    assert session.position == 2
    assert session.go_next() == 3 and session.go_next() == 3
    assert session.go_prev() == 2
    for _ in range(10):
        assert session.go_random() in (2, 3)
    session.set_filter("all")
    seen = {session.go_random() for _ in range(60)}
    assert seen == set(range(7))
    session.go_to(5)
    assert session.position == 5
    with pytest.raises(DefectlensError):
        session.go_to(7)


def test_status_line_says_match_or_mismatch():
    session = make_session(0.5)
    assert session.status_line().endswith("ground truth defect -> defect: MATCH")
    assert session.status_line().startswith("1/7 [All images] 0.png")
    session.go_to(2)
    assert session.status_line().endswith("ground truth defect -> ok: MISMATCH")
    session.go_to(6)
    assert "ERROR: not an image file" in session.status_line()


def test_threshold_and_positive_class_are_validated():
    session = make_session()
    with pytest.raises(DefectlensError, match="between 0 and 1"):
        session.set_threshold(1.5)
    with pytest.raises(DefectlensError, match="not one of"):
        session.set_positive_class("scratch")
