"""A hot-folder station on an anomaly bundle: the scratched part is the anomalous class (NG for the PLC), the
clean one the normal class (OK), logged, published and sorted as a classifier's decisions are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.require import import_or_missing

import_or_missing("watchdog", flag="LINE", reason="the hot folder needs watchdog (the [line] extra)")

from defectlens.core.anomaly import ANOMALOUS  # noqa: E402
from defectlens.inference.predictor import Predictor  # noqa: E402
from defectlens.inspections import Filters, InspectionLog  # noqa: E402
from defectlens.line.folder import FolderSource  # noqa: E402
from defectlens.line.handshake import ErrorCode, Verdict  # noqa: E402
from defectlens.line.sort import SortSink  # noqa: E402
from defectlens.line.station import Station, good_classes  # noqa: E402
from tests.anomaly_fixtures import scratched, texture  # noqa: E402
from tests.unit.line.station_helpers import RecordingSink, wait_for  # noqa: E402


@pytest.fixture
def log(tmp_path: Path):
    with InspectionLog(tmp_path / "log.sqlite") as opened:
        yield opened


def test_the_station_calls_a_scratch_anomalous_and_a_clean_part_good(anomaly_fitted, tmp_path, log) -> None:
    predictor = Predictor.load(anomaly_fitted.bundle.path)
    assert good_classes(predictor.spec) == {"good"}  # the normal class is the good one, with no station file
    inbox, staging = tmp_path / "in", tmp_path / "staging"
    inbox.mkdir()
    staging.mkdir()
    rng = np.random.default_rng(21)
    scratched(rng)[0].save(staging / "scratch.png")
    texture(rng).save(staging / "clean.png")
    sink = RecordingSink()
    source = FolderSource(inbox, settle=0.2, interval=0.1)
    station = Station(
        source=source, predictor=predictor, log=log, sinks=[sink, SortSink(tmp_path / "sorted")], name="hf"
    )
    with station:
        for name in ("scratch.png", "clean.png"):
            (staging / name).rename(inbox / name)  # complete files, as a camera's FTP client renames them in
        wait_for(lambda: len(sink.results) == 2, "both parts' results")
        station.stop()
    results = {r.frame.name: r for r in sink.results}
    bad, good = results["scratch.png"], results["clean.png"]
    assert (bad.status, bad.decision, bad.class_index, bad.ok) == ("ok", ANOMALOUS, 1, False)
    assert (good.status, good.decision, good.class_index, good.ok) == ("ok", "good", 0, True)
    assert bad.defect_probability is not None and bad.defect_probability >= 0.5
    assert good.defect_probability is not None and good.defect_probability < 0.5
    assert set(bad.probabilities) == {"good", ANOMALOUS}
    # the PLC's view: NG with the anomalous class and its score, OK for the clean part
    ng, ok = Verdict.of(bad), Verdict.of(good)
    assert (ng.ok, ng.ng, ng.no_decision, ng.class_index, ng.class_name) == (False, True, False, 1, ANOMALOUS)
    assert (ok.ok, ok.ng, ok.no_decision, ok.class_index, ok.class_name) == (True, False, False, 0, "good")
    assert ng.error_code is ErrorCode.NONE and ng.defect_score == pytest.approx(bad.defect_probability)
    rows = {row.client_name: row for row in log.query(Filters(station="hf"))}
    assert rows["scratch.png"].prediction == ANOMALOUS and rows["clean.png"].prediction == "good"
    assert rows["scratch.png"].model_id == predictor.model_id
    assert [p.name for p in (tmp_path / "sorted" / ANOMALOUS).iterdir()] == ["scratch.png"]
    assert [p.name for p in (tmp_path / "sorted" / "good").iterdir()] == ["clean.png"]
