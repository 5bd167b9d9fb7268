"""Frames the gate would not let the model judge (#26) in the inspector: their own status, wording and
filter, never a class at any threshold, never among the unreadable; reviewed by an override only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from defectlens.core.errors import DefectlensError
from defectlens.gui import report
from defectlens.gui.app import Inspector
from defectlens.gui.session import FILTERS, Session
from defectlens.inference.gate import GateCheck
from defectlens.inference.predictor import Prediction

UNIFORM = "frame is almost uniform: contrast (std) 0.0 grey levels, training images 30.1-41.2 (accepted from 20.0)"


def decided(name: str, p_defect: float, flag: str = "") -> Prediction:
    probs = {"ok": 1.0 - p_defect, "defect": p_defect}
    label = max(probs, key=probs.__getitem__)
    check = GateCheck(bool(flag), (flag,) if flag else (), 1.0, 2.0)
    return Prediction(name, label, probs[label], probs, 0.5, 2.0, gate=check)


def refused(name: str) -> Prediction:
    check = GateCheck(True, (UNIFORM,), 7.5, 2.0, {"contrast": 0.0})
    return Prediction(name, "", 0.0, {}, 0.5, 2.0, status="needs_review", reason=UNIFORM, gate=check)


@pytest.fixture
def session(tmp_path) -> Session:
    """ok/a (0.2), defect/b (0.9), defect/black (refused), ok/c (0.3, decided but flagged: warn), ok/broken."""
    files = []
    for rel in ("ok/a.png", "defect/b.png", "defect/black.png", "ok/c.png", "ok/broken.png"):
        path = tmp_path / rel
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8), 9 * len(files), np.uint8)).save(path)
        files.append(path)
    s = Session(("ok", "defect"), positive_class="defect", threshold=0.5, seed=0)
    s.set_inputs(files, {f: f.parent.name for f in files})
    for i, p in enumerate([decided("a", 0.2), decided("b", 0.9), refused("black"), decided("c", 0.3, UNIFORM), None]):
        s.apply(i, p if p is not None else Prediction.error("broken", "not an image file"))
    return s


def test_a_frame_not_judged_has_no_class_at_any_threshold_and_its_own_filter(session):
    assert "needs_review" in FILTERS
    for t in (0.0, 0.5, 1.0):
        session.set_threshold(t)
        assert session.decisions()[2] == -1 and session.view(2).prediction is None
    session.set_threshold(0.5)
    assert session.decisions().tolist() == [0, 1, -1, 0, -1]
    assert session.select("needs_review") == [2, 3]  # refused, and decided with the flag (warn)
    assert session.select("errors") == [4]  # never among the unreadable
    assert session.select("mistakes") == []  # not judged is not a mistake
    assert session.metrics_input().y.tolist() == [0, 1, 0]  # the figures leave it out
    session.set_filter("needs_review")
    assert session.position == 2
    assert session.status_line() == f"1/2 [Needs review (not judged)] black.png  NOT JUDGED: needs review: {UNIFORM}"
    session.go_next()
    assert session.status_line().endswith(f"ground truth ok -> ok: MATCH  [flagged: {UNIFORM}]")


def test_the_export_counts_it_apart(session, tmp_path):
    rows = report.csv_rows(session)
    assert [r["status"] for r in rows] == ["ok", "ok", "needs_review", "ok", "error"]
    assert rows[2]["reason"] == UNIFORM and rows[2]["prediction"] == "" and rows[2]["p_defect"] == ""
    data = report.summary(session)
    assert data["counts"] == {"ok": 2, "defect": 1, "NEEDS REVIEW": 1, "ERROR": 1}
    assert data["needs_review"] == [{"file": str(session.items[2].path), "reason": UNIFORM}]


def test_it_is_logged_as_needs_review_and_overridden_not_confirmed(session, tmp_path):
    from defectlens.core.spec import ModelSpec
    from defectlens.inspections import InspectionLog

    spec = ModelSpec(arch="simple_cnn", class_names=("ok", "defect"), positive_class="defect", threshold=0.5)
    with InspectionLog(tmp_path / "log.sqlite") as log:
        with pytest.raises(DefectlensError, match=r"not judged .* nothing to confirm"):
            report.record_verdict(log, session, spec, "m", 2, "confirmed")
        row = report.record_verdict(log, session, spec, "m", 2, "overridden", label="defect")
        assert (row.status, row.prediction, row.verdict_label, row.reason) == ("needs_review", None, "defect", UNIFORM)
        assert (row.ood_score, row.gate_flagged, row.probabilities) == (7.5, True, {})
        flagged = report.record_verdict(log, session, spec, "m", 3, "confirmed")
        assert (flagged.status, flagged.prediction, flagged.gate_flagged) == ("ok", "ok", True)
        report.record_verdict(log, session, spec, "m", 1, "confirmed")
        tally = log.tally()
        assert (tally.decided, tally.needs_review, tally.flagged) == ({"defect": 1, "ok": 1}, 1, 1)


def test_the_inspector_sends_a_black_frame_for_review(gated_bundle, tiny_dataset, tmp_path):
    from defectlens.data.manifest import Manifest

    manifest = Manifest.read(tiny_dataset)
    folder = tmp_path / "parts" / "ok"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(folder / "a_black.png")
    (folder / "b_part.png").write_bytes(manifest.resolve(manifest.split("train")[0]).read_bytes())
    app = Inspector(db=tmp_path / "log.sqlite", seed=0, batch_size=4, threads=1, gate="refuse")
    try:
        app.open_source(folder.parent)
        app.open_model(gated_bundle)
        scored = [e for e in app.wait() if e.kind == "scored"]
        assert "1 need review; 0 unreadable" in scored[0].text
        assert app.session.select("needs_review") == [0] and app.session.items[0].refused
        assert "uniform" in app.session.items[0].review and app.session.view(1).prediction in ("ok", "defect")
        assert "gate refuse" in app.model.describe()
    finally:
        app.close()
    with pytest.raises(DefectlensError, match="unknown gate mode"):
        Inspector(db=tmp_path / "log2.sqlite", gate="lax")  # type: ignore[arg-type]


@pytest.mark.parametrize(("argv", "mode"), [([], "refuse"), (["--gate", "warn"], "warn")])
def test_the_inspector_command_takes_gate(monkeypatch, argv, mode):
    launch = pytest.importorskip("defectlens.gui.launch", reason="the inspector needs Tk")
    from defectlens.cli import main

    seen = {}
    monkeypatch.setattr(launch, "run_inspector", lambda **kw: seen.update(kw))
    assert main(["inspector", *argv]) == 0 and seen["gate"] == mode
