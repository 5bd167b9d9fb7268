"""Evaluation by hand with the defect class second, first, and with three classes: the threshold fitted on
validation, the decisions and figures on test, and the rows of predictions.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from defectlens.data.manifest import Manifest, Record
from defectlens.evaluation.evaluate import EvalSettings, evaluate
from defectlens.workflows.evaluate import evaluate_model, score_splits
from tests.helpers import LAYOUTS, scripted_predictor, write_part


def binary(p_defect: float) -> dict[str, float]:
    return {"defect": p_defect, "ok": round(1 - p_defect, 6)}


# (split, label, probabilities). Validation defect probabilities, by label: ok 0.2, defect 0.4, ok 0.6,
# defect 0.8; F1 by candidate threshold: 0.2 4/6, 0.3 4/5, 0.5 2/4, 0.7 2/3: the threshold is 0.3.
# On test at 0.3: defects 0.8, 0.4 caught, 0.2 missed; good parts 0.2, 0.2 passed, 0.6 a false alarm.
BINARY = [
    ("val", "ok", binary(0.2)),
    ("val", "defect", binary(0.4)),
    ("val", "ok", binary(0.6)),
    ("val", "defect", binary(0.8)),
    ("test", "defect", binary(0.8)),
    ("test", "defect", binary(0.4)),
    ("test", "defect", binary(0.2)),
    ("test", "ok", binary(0.6)),
    ("test", "ok", binary(0.2)),
    ("test", "ok", binary(0.2)),
]
BINARY_DECISIONS = ["defect", "defect", "ok", "defect", "ok", "ok"]  # the test rows above, at 0.3
# three classes (crack, ok, scratch), decided by the most probable; the same rows in val and test
THREE = [
    ("crack", {"crack": 0.6, "ok": 0.2, "scratch": 0.2}),  # -> crack
    ("scratch", {"crack": 0.2, "ok": 0.6, "scratch": 0.2}),  # -> ok
    ("ok", {"crack": 0.2, "ok": 0.2, "scratch": 0.6}),  # -> scratch
    ("scratch", {"crack": 0.4, "ok": 0.0, "scratch": 0.6}),  # -> scratch
    ("ok", {"crack": 0.2, "ok": 0.6, "scratch": 0.2}),  # -> ok
    ("crack", {"crack": 0.2, "ok": 0.2, "scratch": 0.6}),  # -> scratch
]
THREE_DECISIONS = ["crack", "ok", "scratch", "scratch", "ok", "scratch"]


def dataset(root: Path, layout: str) -> Manifest:
    classes, positive, _ = LAYOUTS[layout]
    rows = BINARY if positive else [(s, label, p) for s in ("val", "test") for label, p in THREE]
    records = []
    for i, (split, label, probs) in enumerate(rows):
        rel = f"{label}/{split}_{i:02d}.png"
        write_part(root / "images" / rel, probs, classes)
        records.append(Record(path=rel, label=label, split=split, width=16, height=16, mode="RGB", group=rel))
    info = {"name": layout, "root": str(root / "images"), "classes": list(classes), "positive_class": positive}
    Manifest(records=records, info=info).write(root / "ds")
    return Manifest.read(root / "ds")


SETTINGS = EvalSettings(calibrate=False, bootstrap=0)  # temperature 1: the probabilities as written


@pytest.mark.parametrize("layout", ["defect_last", "defect_first"])
@pytest.mark.parametrize("method", ["f1", "recall", "cost"])
def test_binary_evaluation_by_hand(layout, method, tmp_path):
    # recall 1.0: the highest threshold catching the validation defect at 0.4 is 0.3; cost (10, 1): 0.3 costs
    # one false alarm (1/4 per part), 0.2 two, 0.5 a miss and a false alarm: 0.3 for every method
    predictor = scripted_predictor(layout)
    scores = score_splits(predictor, dataset(tmp_path, layout), ["val", "test"])
    settings = EvalSettings(calibrate=False, bootstrap=0, threshold_method=method, target_recall=1.0)
    result = evaluate(scores, spec=predictor.spec, report=["test"], settings=settings)
    assert result.positive_class == "defect" and result.temperature == 1.0
    assert result.threshold.method == method and result.threshold.threshold == pytest.approx(0.3, abs=1e-6)
    m = result.metrics["test"]
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 2)
    assert m["accuracy"] == pytest.approx(4 / 6) and m["defect_recall"] == pytest.approx(2 / 3)
    assert m["false_alarm_rate"] == pytest.approx(1 / 3) and m["expected_cost"] == pytest.approx(11 / 6)
    names = list(predictor.spec.class_names)
    _, decided = result.decisions(scores["test"])
    assert [names[k] for k in decided] == BINARY_DECISIONS


def test_three_class_evaluation_by_hand(tmp_path):
    predictor = scripted_predictor("three_classes")
    scores = score_splits(predictor, dataset(tmp_path, "three_classes"), ["val", "test"])
    result = evaluate(scores, spec=predictor.spec, report=["test"], settings=SETTINGS)
    assert result.threshold is None and result.positive_class is None
    m = result.metrics["test"]
    assert m["accuracy"] == pytest.approx(0.5) and m["threshold"] is None and m["expected_cost"] is None
    # rows: truth crack, ok, scratch; columns: decided crack, ok, scratch
    assert m["confusion_matrix"] == [[1, 0, 1], [0, 1, 1], [0, 1, 1]]
    assert [r["recall"] for r in m["per_class"]] == pytest.approx([0.5, 0.5, 0.5])
    _, decided = result.decisions(scores["test"])
    assert [predictor.spec.class_names[k] for k in decided] == THREE_DECISIONS


@pytest.mark.parametrize("layout", ["defect_first", "three_classes"])
def test_evaluate_writes_the_decisions_by_hand(layout, tmp_path):
    positive = LAYOUTS[layout][1]
    evaluate_model(
        scripted_predictor(layout), dataset(tmp_path, layout), out_dir=tmp_path / "eval", splits=("test",),
        settings=SETTINGS,
    )  # fmt: skip
    payload = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    with (tmp_path / "eval" / "predictions.csv").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    expected = BINARY_DECISIONS if positive else THREE_DECISIONS
    assert [r["prediction"] for r in sorted(rows, key=lambda r: r["path"].split("/")[-1])] == expected
    for r in rows:
        assert r["correct"] == ("1" if r["prediction"] == r["label"] else "0")
    if positive:
        assert payload["threshold"]["threshold"] == pytest.approx(0.3, abs=1e-6)
        assert payload["metrics"]["test"]["defect_recall"] == pytest.approx(2 / 3)
        assert [float(r["p_defect"]) for r in sorted(rows, key=lambda r: r["path"].split("/")[-1])] == pytest.approx(
            [0.8, 0.4, 0.2, 0.6, 0.2, 0.2], abs=1e-6
        )
    else:
        assert payload["threshold"] is None and payload["metrics"]["test"]["accuracy"] == pytest.approx(0.5)
