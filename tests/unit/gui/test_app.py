"""The inspector's controller without a display: background scoring, re-labelling, verdicts, export, settings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from defectlens.gui.app import Inspector
from defectlens.gui.model import Advanced
from defectlens.inspections import Inspection


@pytest.fixture
def inspector(tmp_path):
    app = Inspector(db=tmp_path / "log.sqlite", seed=0, batch_size=4)
    yield app
    app.close()


def opened(app: Inspector, bundle: Path, folder: Path) -> Inspector:
    app.open_source(folder)
    app.open_model(bundle)
    events = app.wait()
    assert [e.kind for e in events if e.kind in ("model", "scored")] == ["model", "scored"]
    return app


def judged(app: Inspector, verdict: str, **kw) -> Inspection:
    """Give a verdict on the current image and wait for the log's thread to save it; the row it is on."""
    index = app.session.position
    app.record_verdict(verdict, **kw)
    assert app.session.items[index].saving  # written off the caller's thread: the answer comes through poll()
    events = [e for e in app.wait() if e.kind.startswith("verdict")]
    assert [e.kind for e in events] == ["verdict"], events
    return app.log.get(app.session.items[index].inspection_id)


def first_readable(app: Inspector) -> int:
    return int(np.flatnonzero(app.session.usable)[0])


def p_defect(app: Inspector) -> np.ndarray:
    ok = app.session.usable
    return np.array([app.session.probabilities(i)[1] for i in np.flatnonzero(ok)])


def test_folder_is_scored_in_the_background_and_an_unreadable_image_does_not_stop_it(
    inspector, bundle, labelled_folder
):
    app = opened(inspector, bundle, labelled_folder)
    items = app.session.items
    assert len(items) == 9 and all(item.scored for item in items)
    broken = [item for item in items if item.error]
    assert [b.path.name for b in broken] == ["broken.png"]
    assert "not an image" in broken[0].error
    assert app.session.usable.sum() == 8
    assert {item.truth for item in items} == {"ok", "defect"}
    assert app.last_rate is not None and app.last_rate > 0


def test_threshold_relabels_the_batch_without_new_inference(inspector, bundle, labelled_folder):
    app = opened(inspector, bundle, labelled_folder)
    generation = app.worker.generation
    probs = np.array([app.session.probabilities(i) for i in np.flatnonzero(app.session.usable)])
    truth = app.session.truth_indices()[app.session.usable]
    for t in sorted({0.0, *p_defect(app).round(6), 1.0}):
        app.set_threshold(float(t))
        decided = np.where(probs[:, 1] >= t, 1, 0)  # a defect where its probability reaches the threshold
        assert np.array_equal(app.session.decisions()[app.session.usable], decided)
        m = app.session.metrics()
        assert m["fn"] == int(np.sum((truth == 1) & (decided == 0)))
        assert m["fp"] == int(np.sum((truth == 0) & (decided == 1)))
        assert m["accuracy"] == pytest.approx(float(np.mean(truth == decided)))
    assert app.worker.generation == generation and app.poll() == []  # nothing was scored again
    app.set_threshold(0.9)
    app.restore_validated()
    assert app.session.threshold == 0.5 and app.session.positive_class == "defect"


def test_verdicts_land_in_the_inspection_log(inspector, bundle, labelled_folder):
    app = opened(inspector, bundle, labelled_folder)
    first = first_readable(app)
    app.session.go_to(first)
    shown = app.session.view(first)
    row = judged(app, "confirmed")
    assert row.source == "inspector" and row.verdict == "confirmed" and row.verdict_label == shown.prediction
    assert row.client_name == str(shown.item.path) and row.model_id == app.model.predictor.model_id
    assert row.threshold == 0.5 and row.width == 48 and row.image_bytes == shown.item.path.stat().st_size
    assert row.probabilities == pytest.approx(shown.probabilities)
    other = "ok" if shown.prediction == "defect" else "defect"
    row2 = judged(app, "overridden", label=other, comment="scratch under the flange")
    assert row2.id == row.id  # the same decision: the verdict is updated on the same row
    assert (row2.verdict, row2.verdict_label, row2.comment) == ("overridden", other, "scratch under the flange")
    # a threshold that flips the shown decision: confirming what is shown now gives the part that class, on the
    # image's one row (an override of the logged decision), never a second row that contradicts the first
    app.set_threshold(0.0 if shown.prediction == "ok" else 1.0)
    assert app.session.view(first).prediction == other
    row3 = judged(app, "confirmed")
    assert row3.id == row.id and row3.prediction == shown.prediction
    assert (row3.verdict, row3.verdict_label) == ("overridden", other)
    assert app.log.count() == 1
    assert [(v.verdict, v.label) for v in app.log.verdicts(row.id)] == [
        ("confirmed", shown.prediction),
        ("overridden", other),
        ("overridden", other),
    ]
    app.session.go_to(next(i for i, item in enumerate(app.session.items) if item.error))
    with pytest.raises(Exception, match="no prediction to judge"):
        app.record_verdict("confirmed")


def test_export_csv_and_summary(inspector, bundle, labelled_folder, tmp_path):
    app = opened(inspector, bundle, labelled_folder)
    app.set_threshold(float(np.median(p_defect(app))))
    first = first_readable(app)
    app.session.go_to(first)
    judged(app, "confirmed", comment="fine")
    summary_path = app.export(tmp_path / "out" / "batch.csv")
    with (tmp_path / "out" / "batch.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9
    assert {"file", "ground_truth", "prediction", "p_ok", "p_defect", "threshold", "verdict"} <= set(rows[0])
    for i, r in enumerate(rows):
        assert r["prediction"] == (app.session.view(i).prediction or "")
    assert rows[first]["verdict"] == "confirmed" and rows[first]["comment"] == "fine"
    assert rows[first]["inspection_id"] == str(app.session.items[first].inspection_id)
    assert [r["status"] for r in rows].count("error") == 1
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    m = app.session.metrics()
    assert summary["metrics"]["fn"] == m["fn"] == len(summary["false_negatives"])
    assert summary["metrics"]["fp"] == m["fp"] == len(summary["false_positives"])
    assert summary["false_negatives"] == [str(app.session.items[i].path) for i in app.session.select("missed")]
    assert summary["counts"]["ERROR"] == 1 and summary["labelled"] == 9 and summary["metrics"]["n"] == 8
    assert summary["verdicts"] == {"confirmed": 1, "overridden": 0, "none": 8}
    assert summary["validated_threshold"] == 0.5


def test_model_that_fails_to_load_says_why(inspector, tmp_path):
    (tmp_path / "bad.dlens").write_bytes(b"junk")
    inspector.open_model(tmp_path / "bad.dlens")
    events = inspector.wait()
    errors = [e for e in events if e.kind != "ready"]
    assert [e.kind for e in errors] == ["model_error"]
    assert "bad.dlens" in errors[0].text and "not a defectlens bundle" in errors[0].text and inspector.model is None


def test_settings_remember_model_folder_threshold_and_overrides(bundle, labelled_folder, tmp_path):
    app = opened(Inspector(db=tmp_path / "log.sqlite"), bundle, labelled_folder)
    app.set_threshold(0.37)
    app.save_settings(geometry="1000x800+5+5")
    app.close()
    again = Inspector(db=tmp_path / "log.sqlite")
    assert again.settings.geometry == "1000x800+5+5"
    again.start()  # nothing on the command line: what the settings remember
    again.wait()
    assert again.model is not None and again.model.path == bundle
    assert again.source == labelled_folder and len(again.session.items) == 9
    assert again.session.threshold == 0.37
    again.open_model(bundle, advanced=Advanced(swap_classes=True))
    again.wait()
    assert again.model.overridden == ("class_names",) and again.settings.advanced["swap_classes"] is True
    again.reset_settings()
    assert not (tmp_path / "config" / "inspector.json").exists()
    again.close()


def test_gradcam_overlay_is_computed_in_the_background(inspector, bundle, labelled_folder):
    app = opened(inspector, bundle, labelled_folder)
    assert app.gradcam_unavailable() is None
    first = first_readable(app)
    assert app.overlay(first) is None  # asked for; arrives through poll()
    events = app.wait()
    assert [e.kind for e in events] == ["gradcam"] and events[0].data == first
    overlay = app.overlay(first)
    assert overlay is not None and overlay.size == (48, 48) and overlay.mode == "RGB"


def test_a_single_image_is_a_batch_of_one(inspector, bundle, labelled_folder):
    inspector.open_model(bundle)
    inspector.wait()
    inspector.open_source(labelled_folder / "ok" / "ok_0.png")
    inspector.wait()
    view = inspector.session.view(0)
    assert len(inspector.session.items) == 1 and view.prediction in ("ok", "defect")
    assert view.item.truth is None and view.item.latency_ms > 0
    assert sum(view.probabilities.values()) == pytest.approx(1.0)


def test_figures_are_computed_off_the_window_thread(inspector, bundle, labelled_folder):
    app = opened(inspector, bundle, labelled_folder)
    app.set_threshold(0.3)
    assert not app.figures_current
    app.request_metrics()
    app.request_metrics()  # asked twice while running: merged
    events = app.wait()
    assert [e.kind for e in events] == ["metrics"]
    assert app.figures_current and app.figures == app.session.metrics()
    assert app.figures["threshold"] == 0.3


def test_the_logic_needs_no_display_nor_tk():
    import subprocess
    import sys

    code = (
        "import sys, defectlens.gui.app, defectlens.gui.report, defectlens.gui.settings; "
        "print(sorted({'tkinter', '_tkinter', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
