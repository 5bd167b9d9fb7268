"""The station's drift watch: a stream that drifts (the lamp dims until the gate refuses frames) raises one
``drift_alarm`` event and the station's drift gauges; a model swap starts a new window."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from defectlens.inference.drift import DriftConfig
from defectlens.inspections import InspectionLog
from defectlens.line.drift import StationDrift
from defectlens.line.metrics import LineMetrics
from defectlens.line.station import Station, StationEvent
from tests.unit.line.station_helpers import FeedSource, wait_for


def frames(dataset: Path, offset: float, splits: tuple[str, ...] = ("val", "test")) -> list[tuple[bytes, str]]:
    """PNG bytes of the dataset's images of ``splits``, ``offset`` grey levels added."""
    from defectlens.data.manifest import Manifest

    m = Manifest.read(dataset)
    out = []
    for split in splits:
        for r in m.split(split):
            a = np.clip(np.asarray(Image.open(m.resolve(r)).convert("L"), np.float64) + offset, 0, 255)
            buf = io.BytesIO()
            Image.fromarray(a.astype(np.uint8)).save(buf, "PNG")
            out.append((buf.getvalue(), f"{split}-{Path(r.path).name}"))
    return out


def test_a_drifting_stream_raises_one_drift_alarm_event_and_the_gauges(gated_bundle, tiny_dataset, tmp_path) -> None:
    from defectlens.inference.predictor import Predictor

    predictor = Predictor.load(gated_bundle, threads=1)
    events: list[StationEvent] = []
    metrics = LineMetrics("s1")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        source = FeedSource()
        station = Station(source=source, predictor=predictor, log=log, sinks=[], name="s1", metrics=metrics,
                          on_event=events.append)  # fmt: skip
        station.drift = StationDrift(metrics, DriftConfig(window=20))
        with station:
            for data, name in frames(tiny_dataset, 0.0):  # 32 frames as validated
                source.put(data, name)
            wait_for(lambda: station.stats.published >= 32, "the clean frames")
            assert not [e for e in events if e.kind.startswith("drift_")]
            for data, name in frames(tiny_dataset, -90.0) * 2:  # 64 frames under a dimmed lamp
                source.put(data, name)
            station.stop()
            assert station.wait(60)
    drift = [e for e in events if e.kind.startswith("drift_")]
    assert [e.kind for e in drift] == ["drift_alarm"] and drift[0].text.startswith("drift: ")
    text = metrics.render().decode()
    assert "defectlens_line_drift_alarm 1.0" in text and "defectlens_line_drift_alarms_total 1.0" in text
    assert 'defectlens_line_drift_severity{check="share:needs_review"}' in text


def test_the_station_watch_starts_over_for_another_model(gated_bundle, bundle, tiny_dataset) -> None:
    from defectlens.inference.predictor import Predictor

    gated, other = Predictor.load(gated_bundle, threads=1), Predictor.load(bundle, threads=1)
    drift = StationDrift(None, DriftConfig(window=10, min_verdicts=5))
    for p in gated.predict_many([(n, d) for d, n in frames(tiny_dataset, 0.0)], batch_size=8):
        drift.observe(gated, p)
    assert drift.watch is not None and drift.watch.status().filled == 10
    (first,) = other.predict_many([("x", frames(tiny_dataset, 0.0)[0][0])], batch_size=1)
    drift.observe(other, first)
    assert drift.watch.model_id == other.model_id and drift.watch.status().images == 1
