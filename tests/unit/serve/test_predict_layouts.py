"""POST /v1/predict by hand with the defect class second, first, and with three classes: the decided
class, confidence, defect probability, class probabilities and threshold of each result, and the logged row."""

from __future__ import annotations

import pytest

from tests.helpers import LAYOUTS, scripted_predictor, write_part
from tests.unit.workflows.test_predict_rows import PARTS


def post(client, tmp_path, layout, parts, **kw):
    files = []
    for name, probs, *_ in parts:
        path = write_part(tmp_path / name, probs, LAYOUTS[layout][0])
        files.append(("files", (name, path.read_bytes(), "image/png")))
    r = client.post("/v1/predict", files=files, **kw)
    assert r.status_code == 200, r.text
    return {x["file"]: x for x in r.json()["results"]}


@pytest.mark.parametrize("layout", ["defect_last", "defect_first", "three_classes"])
def test_results_by_hand(layout, make_client, tmp_path):
    classes, positive, threshold = LAYOUTS[layout]
    parts = PARTS["three_classes" if positive is None else "binary"]
    with make_client(pred=scripted_predictor(layout)) as (client, log):
        results = post(client, tmp_path, layout, parts)
        for name, probs, prediction, confidence, *_ in parts:
            res = results[name]
            assert (res["status"], res["prediction"], res["threshold"]) == ("ok", prediction, threshold)
            assert res["confidence"] == pytest.approx(confidence, abs=1e-6)
            assert res["probabilities"] == pytest.approx(probs, abs=1e-6)
            assert list(res["probabilities"]) == list(classes)
            assert res["positive_class"] == positive
            row = log.get(res["inspection_id"])
            assert (row.prediction, row.threshold) == (prediction, threshold)
            if positive is None:
                assert res["defect_probability"] is None and row.defect_probability is None
            else:
                assert res["defect_probability"] == pytest.approx(probs["defect"], abs=1e-6)
                assert row.defect_probability == pytest.approx(probs["defect"], abs=1e-6)


@pytest.mark.parametrize("layout", ["defect_last", "defect_first"])
@pytest.mark.parametrize(
    ("threshold", "expected"),
    [("0", ["defect", "defect"]), ("0.19", ["defect", "defect"]), ("0.5", ["ok", "defect"]), ("1", ["ok", "ok"])],
)
def test_threshold_override_by_hand(layout, threshold, expected, make_client, tmp_path):
    # defect probabilities 0.2 and 0.8 (to float32 precision: exactly-at-the-threshold is decide's own test)
    parts = [("low.png", {"defect": 0.2, "ok": 0.8}), ("high.png", {"defect": 0.8, "ok": 0.2})]
    with make_client(pred=scripted_predictor(layout)) as (client, _):
        results = post(client, tmp_path, layout, parts, data={"threshold": threshold})
    assert [results[name]["prediction"] for name, _ in parts] == expected
    assert {r["threshold"] for r in results.values()} == {float(threshold)}
