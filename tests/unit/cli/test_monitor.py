"""``defectlens monitor LOG`` on a real inspection log (written by a station with a gated bundle): the windows
after the lamp dims alarm, the clean ones before do not; the log's own baseline works without a bundle;
operator verdicts feed the agreement check; what the rows cannot tell is said; a missing log exits 2."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.cli import main
from defectlens.inspections import InspectionLog

CLEAN = 32  # the tiny dataset's validation and test images


def frames(dataset: Path, offset: float) -> list[tuple[bytes, str]]:
    from defectlens.data.manifest import Manifest

    m = Manifest.read(dataset)
    out = []
    for r in m.split("val") + m.split("test"):
        a = np.clip(np.asarray(Image.open(m.resolve(r)).convert("L"), np.float64) + offset, 0, 255)
        buf = io.BytesIO()
        Image.fromarray(a.astype(np.uint8)).save(buf, "PNG")
        out.append((buf.getvalue(), Path(r.path).name))
    return out


@pytest.fixture(scope="module")
def drifted_log(gated_bundle, tiny_dataset, tmp_path_factory) -> Path:
    """A station's log: 32 frames as validated, then 64 under a dimmed lamp."""
    from defectlens.inference.predictor import Predictor
    from defectlens.line.station import Station
    from tests.unit.line.station_helpers import FeedSource

    path = tmp_path_factory.mktemp("monitor") / "log.sqlite"
    with InspectionLog(path) as log:
        source = FeedSource()
        station = Station(source=source, predictor=Predictor.load(gated_bundle, threads=1), log=log, sinks=[], name="s")
        with station:
            for data, name in frames(tiny_dataset, 0.0) + frames(tiny_dataset, -90.0) * 2:
                source.put(data, name)
            station.stop()
            assert station.wait(60)
    return path


def test_monitor_alarms_after_the_drift_and_not_before(drifted_log, gated_bundle, tmp_path, capsys) -> None:
    out = tmp_path / "report.json"
    code = main(["monitor", str(drifted_log), "--model", str(gated_bundle), "--window", "20", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["rows"] == report["replayed"] == CLEAN + 64 and report["skipped"] == {"other models": 0}
    alarms = [e for e in report["events"] if e["kind"] == "drift_alarm"]
    assert len(alarms) == 1 and alarms[0]["inspection_id"] > CLEAN
    assert {"ood", "share:needs_review"} <= set(report["peaks"]) and "brightness" not in report["peaks"]
    assert any(u.startswith("image statistics (the log does not keep them") for u in report["unavailable"])
    text = capsys.readouterr().out
    assert "alarms: 1" in text and "drift_alarm at inspection" in text and "not available: image statistics" in text


def test_monitor_without_a_bundle_compares_with_the_logs_first_rows(drifted_log, capsys) -> None:
    assert main(["monitor", str(drifted_log), "--window", "20", "--baseline", "30"]) == 0
    text = capsys.readouterr().out
    assert "66 of 96 rows" in text and "the log's first 30 rows" in text and "alarms: 1" in text


def test_operator_verdicts_feed_the_agreement_check(drifted_log, gated_bundle, tmp_path) -> None:
    import shutil

    copy = tmp_path / "reviewed.sqlite"
    shutil.copy(drifted_log, copy)
    with InspectionLog(copy) as log:
        decided = [r for r in reversed(log.query(limit=-1)) if r.status == "ok" and r.prediction is not None]
        for r in decided[:30]:  # operators overrule every decision they look at
            other = next(c for c in ("ok", "defect") if c != r.prediction)
            log.set_verdict(r.id, "overridden", label=other, operator="qa")
    out = tmp_path / "r.json"
    assert main(["monitor", str(copy), "--model", str(gated_bundle), "--window", "20", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["peaks"]["agreement"] >= 1.0 and report["final"]["agreement"] == 0.0
    assert any("operators agreed with 0 of the last" in e["text"] for e in report["events"])


def test_a_missing_log_exits_2_naming_it(tmp_path, capsys) -> None:
    assert main(["monitor", str(tmp_path / "nope.sqlite")]) == 2
    assert "nope.sqlite" in capsys.readouterr().err
