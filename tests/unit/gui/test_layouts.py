"""The Inspector's batch view by hand with the defect class second, first, and with three classes: each
image's decision, confidence and MATCH/MISMATCH, the missed-defect and false-alarm lists, the figures at a
threshold, the exported CSV, and the logged verdict's defect probability."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from defectlens.gui import app as app_module
from defectlens.gui.app import Inspector
from defectlens.gui.model import LoadedModel
from tests.helpers import LAYOUTS, scripted_predictor
from tests.unit.workflows.test_predict_rows import parts_of, write_folder


@pytest.fixture
def inspector(tmp_path):
    app = Inspector(db=tmp_path / "log.sqlite", seed=0, batch_size=4)
    yield app
    app.close()


def opened(app: Inspector, layout: str, folder: Path, monkeypatch) -> Inspector:
    predictor = scripted_predictor(layout)
    loaded = LoadedModel(predictor, folder, "bundle", predictor.spec)
    monkeypatch.setattr(app_module, "load_model", lambda path, **kw: loaded)
    app.open_source(folder)
    app.open_model(folder)
    events = app.wait()
    assert [e.kind for e in events if e.kind in ("model", "scored")] == ["model", "scored"]
    return app


def views(app: Inspector, root: Path) -> dict[str, tuple]:
    out = {}
    for i, item in enumerate(app.session.items):
        v = app.session.view(i)
        out[item.path.relative_to(root).as_posix()] = (v.prediction, v.confidence, v.match, i)
    return out


@pytest.mark.parametrize("layout", ["defect_last", "defect_first", "three_classes"])
def test_batch_view_by_hand(layout, inspector, tmp_path, monkeypatch):
    classes, positive, _ = LAYOUTS[layout]
    root = write_folder(tmp_path / "parts", layout)
    app = opened(inspector, layout, root, monkeypatch)
    shown = views(app, root)
    for name, _, prediction, confidence, _truth, match in parts_of(layout):
        got_prediction, got_confidence, got_match, _ = shown[name]
        assert (got_prediction, got_match or "") == (prediction, match)
        assert got_confidence == pytest.approx(confidence, abs=1e-6)
    assert shown[f"{classes[0]}/broken.png"][:3] == (None, None, None)
    m = app.session.metrics()
    assert m["n"] == 4 and m["accuracy"] == pytest.approx(0.5)
    index = {name: v[3] for name, v in shown.items()}
    assert app.session.select("mistakes") == sorted(
        index[n] for n, *_, match in parts_of(layout) if match == "MISMATCH"
    )
    if positive is None:
        assert app.session.select("missed") == [] and app.session.select("false_alarms") == []
        assert m["expected_cost"] is None
        return
    # at 0.3: the defect at 0.2 (b) is missed, the good part at 0.8 (c) is a false alarm
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 1, 1, 1)
    assert app.session.select("missed") == [index["defect/b.png"]]
    assert app.session.select("false_alarms") == [index["ok/c.png"]]
    app.set_threshold(0.1)  # every part a defect
    assert {v[0] for n, v in views(app, root).items() if not n.endswith("broken.png")} == {"defect"}
    assert (app.session.metrics()["fn"], app.session.metrics()["fp"]) == (0, 2)
    app.set_threshold(0.9)  # no part a defect
    assert {v[0] for n, v in views(app, root).items() if not n.endswith("broken.png")} == {"ok"}
    assert (app.session.metrics()["fn"], app.session.metrics()["fp"]) == (2, 0)


@pytest.mark.parametrize("layout", ["defect_last", "defect_first"])
def test_export_and_verdict_carry_the_defect_probability(layout, inspector, tmp_path, monkeypatch):
    root = write_folder(tmp_path / "parts", layout)
    app = opened(inspector, layout, root, monkeypatch)
    app.export(tmp_path / "out" / "batch.csv")
    with (tmp_path / "out" / "batch.csv").open(encoding="utf-8") as fh:
        rows = {Path(r["file"]).relative_to(root).as_posix(): r for r in csv.DictReader(fh)}
    for name, probs, prediction, confidence, truth, match in parts_of(layout):
        row = rows[name]
        assert (row["prediction"], row["ground_truth"], row["match"]) == (prediction, truth, match)
        assert float(row["p_defect"]) == pytest.approx(probs["defect"], abs=1e-6)
        assert float(row["confidence"]) == pytest.approx(confidence, abs=1e-6)
        assert (float(row["threshold"]), row["positive_class"]) == (0.3, "defect")
    broken = rows[f"{LAYOUTS[layout][0][0]}/broken.png"]
    assert (broken["status"], broken["match"], broken["prediction"]) == ("error", "", "")
    app.session.go_to(views(app, root)["defect/b.png"][3])  # defect 0.2: decided ok at 0.3
    app.record_verdict("overridden", label="defect")
    assert [e.kind for e in app.wait() if e.kind.startswith("verdict")] == ["verdict"]
    row = app.log.get(app.session.items[views(app, root)["defect/b.png"][3]].inspection_id)
    assert row.prediction == "ok" and row.defect_probability == pytest.approx(0.2, abs=1e-6)
    assert row.probabilities == pytest.approx({"defect": 0.2, "ok": 0.8}, abs=1e-6)
