"""The values in predict's CSV rows and JSON, by hand, with the defect class second, first, and with three
classes: the decided class, its confidence, the defect probability (the number the threshold is compared
with), every class probability, the threshold, truth and MATCH/MISMATCH, and error rows.

Rows are read by named columns, so new columns can be added without touching these tests.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from defectlens.inference.predictor import Prediction
from defectlens.workflows.predict import row_of
from tests.helpers import CONSTANT_PROBS, LAYOUTS, scripted_predictor, write_part
from tests.unit.hardening import corpus as C

# per layout: (file, probabilities it is written with, expected prediction, confidence, truth, match);
# the binary models decide at threshold 0.3
PARTS = {
    "binary": [
        ("defect/a.png", {"defect": 0.4, "ok": 0.6}, "defect", 0.4, "defect", "MATCH"),  # under 0.5, over 0.3
        ("defect/b.png", {"defect": 0.2, "ok": 0.8}, "ok", 0.8, "defect", "MISMATCH"),  # a missed defect
        ("ok/c.png", {"defect": 0.8, "ok": 0.2}, "defect", 0.8, "ok", "MISMATCH"),  # a false alarm
        ("ok/d.png", {"defect": 0.2, "ok": 0.8}, "ok", 0.8, "ok", "MATCH"),
        ("e.png", {"defect": 0.6, "ok": 0.4}, "defect", 0.6, "", ""),  # no class subfolder: no truth
    ],
    "three_classes": [
        ("crack/a.png", {"crack": 0.6, "ok": 0.2, "scratch": 0.2}, "crack", 0.6, "crack", "MATCH"),
        ("scratch/b.png", {"crack": 0.2, "ok": 0.6, "scratch": 0.2}, "ok", 0.6, "scratch", "MISMATCH"),
        ("ok/c.png", {"crack": 0.2, "ok": 0.2, "scratch": 0.6}, "scratch", 0.6, "ok", "MISMATCH"),
        ("scratch/d.png", {"crack": 0.4, "ok": 0.0, "scratch": 0.6}, "scratch", 0.6, "scratch", "MATCH"),
        ("e.png", {"crack": 0.8, "ok": 0.2, "scratch": 0.0}, "crack", 0.8, "", ""),
    ],
}
BINARY = ["defect_last", "defect_first"]


def parts_of(layout: str) -> list[tuple]:
    return PARTS["three_classes" if layout == "three_classes" else "binary"]


def write_folder(root: Path, layout: str) -> Path:
    classes = LAYOUTS[layout][0]
    for name, probs, *_ in parts_of(layout):
        write_part(root / name, probs, classes)
    (root / classes[0] / "broken.png").write_bytes(b"this is not a PNG")  # an error row with a ground truth
    return root


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return {Path(r["file"]).relative_to(path.parent.parent / "parts").as_posix(): r for r in csv.DictReader(fh)}


@pytest.fixture
def scripted_load(monkeypatch):
    """``scripted_load(layout)``: ``--model`` of any value loads :func:`scripted_predictor` of ``layout``."""
    from defectlens.inference.predictor import Predictor

    def use(layout: str):
        predictor = scripted_predictor(layout)
        monkeypatch.setattr(Predictor, "load", classmethod(lambda cls, *a, **k: predictor))
        return predictor

    return use


@pytest.mark.parametrize("layout", [*BINARY, "three_classes"])
def test_csv_rows_by_hand(layout, scripted_load, tmp_path):
    scripted_load(layout)
    classes, positive, threshold = LAYOUTS[layout]
    folder = write_folder(tmp_path / "parts", layout)
    result = C.run_cli(["predict", str(folder), "--model", "scripted", "--out", str(tmp_path / "out")])
    assert result.code == 1, result.err  # the broken file is an error row: exit code 1
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    assert len(rows) == 6
    for name, probs, prediction, confidence, truth, match in parts_of(layout):
        row = rows[name]
        assert (row["status"], row["prediction"], row["truth"], row["match"]) == ("ok", prediction, truth, match)
        assert float(row["confidence"]) == pytest.approx(confidence, abs=1e-6)
        for c in classes:
            assert float(row[f"p_{c}"]) == pytest.approx(probs[c], abs=1e-6)
        if positive is None:
            assert "defect_probability" not in row and row["threshold"] == ""
        else:
            assert float(row["defect_probability"]) == pytest.approx(probs["defect"], abs=1e-6)
            assert float(row["threshold"]) == threshold
    broken = rows[f"{classes[0]}/broken.png"]
    assert (broken["status"], broken["prediction"], broken["truth"], broken["match"]) == ("error", "", classes[0], "")
    assert broken["confidence"] == "" and broken.get("defect_probability", "") == "" and broken["reason"]
    # two labelled parts of four are decided right, whatever the class order
    assert "accuracy 0.5000 on 4 labelled images" in " ".join(result.out.split())
    assert "MISMATCH rows: 2" in result.out


@pytest.mark.parametrize("layout", BINARY)
@pytest.mark.parametrize(("threshold", "expected"), [("0", "defect"), ("0.4", "defect"), ("0.41", "ok"), ("1", "ok")])
def test_single_image_json_by_hand(layout, threshold, expected, scripted_load, tmp_path):
    scripted_load(layout)
    image = write_part(tmp_path / "part.png", {"defect": 0.4, "ok": 0.6}, LAYOUTS[layout][0])
    result = C.run_cli(["predict", str(image), "--model", "scripted", "--threshold", threshold])
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert out["prediction"] == expected and out["threshold"] == float(threshold)
    assert out["confidence"] == pytest.approx(0.4 if expected == "defect" else 0.6, abs=1e-6)
    assert out["defect_probability"] == pytest.approx(0.4, abs=1e-6)
    assert out["probabilities"] == pytest.approx({"defect": 0.4, "ok": 0.6}, abs=1e-6)


def test_single_image_json_of_three_classes_has_no_defect_probability(scripted_load, tmp_path):
    scripted_load("three_classes")
    image = write_part(tmp_path / "part.png", {"crack": 0.2, "ok": 0.2, "scratch": 0.6}, LAYOUTS["three_classes"][0])
    out = json.loads(C.run_cli(["predict", str(image), "--model", "scripted"]).out)
    assert out["prediction"] == "scratch" and out["confidence"] == pytest.approx(0.6, abs=1e-6)
    assert out["threshold"] is None and "defect_probability" not in out


@pytest.mark.parametrize("layout", ["defect_first", "three_classes"])
def test_a_real_bundle_through_predict(layout, constant_bundle, tmp_path):
    """The same values through an exported bundle (ONNX Runtime), whose network answers every image alike."""
    classes, positive, _ = LAYOUTS[layout]
    probs = CONSTANT_PROBS[layout]
    folder = tmp_path / "parts"
    C.good_images(folder / classes[-1], n=2)
    bundle = str(constant_bundle(layout))
    assert C.run_cli(["predict", str(folder), "--model", bundle, "--out", str(tmp_path / "out")]).code == 0
    expected = "defect" if positive else "ok"  # defect 0.4 at threshold 0.3; three classes: the most probable
    with (tmp_path / "out" / "predictions.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    for row in rows:
        assert row["prediction"] == expected and row["truth"] == classes[-1]
        assert row["match"] == ("MATCH" if expected == classes[-1] else "MISMATCH")
        assert float(row["confidence"]) == pytest.approx(probs[expected], abs=1e-5)
        assert [float(row[f"p_{c}"]) for c in classes] == pytest.approx([probs[c] for c in classes], abs=1e-5)
        if positive:
            assert float(row["defect_probability"]) == pytest.approx(0.4, abs=1e-5)
    single = json.loads(C.run_cli(["predict", rows[0]["file"], "--model", bundle]).out)
    assert single["prediction"] == expected and single.get("defect_probability") == (
        pytest.approx(0.4, abs=1e-5) if positive else None
    )


@pytest.mark.parametrize("defect_first", [False, True])
def test_row_of_by_hand(defect_first):
    classes = ("defect", "ok") if defect_first else ("ok", "defect")
    probs = {"defect": 0.2, "ok": 0.8}
    pred = Prediction("a.png", "ok", 0.8, probs, 0.3, 1.23456, defect_probability=0.2)  # the row carries it
    row = row_of(pred, classes, "defect", "defect")
    assert (row["prediction"], row["confidence"], row["defect_probability"]) == ("ok", 0.8, 0.2)
    assert (row["p_defect"], row["p_ok"], row["threshold"], row["latency_ms"]) == (0.2, 0.8, 0.3, 1.235)
    assert (row["truth"], row["match"]) == ("defect", "MISMATCH")
    assert row_of(pred, classes, None, "defect")["match"] == ""
    error = row_of(Prediction.error("b.png", "not an image", threshold=0.3), classes, "ok", "defect")
    assert (error["status"], error["match"], error["confidence"], error["defect_probability"]) == ("error", "", "", "")
    assert (error["p_ok"], error["truth"], error["threshold"]) == ("", "ok", 0.3)
    assert "defect_probability" not in row_of(pred, classes, None, None)
