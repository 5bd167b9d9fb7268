"""The sort sink (a folder per decision, never overwriting, names kept inside their folder) and the station's
Prometheus endpoint (its own registry, on a port the system picks)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np

from defectlens.inspections import InspectionLog
from defectlens.line.base import Frame, Result
from defectlens.line.sort import SortSink
from defectlens.line.station import Station
from tests.require import import_or_missing
from tests.unit.line.station_helpers import BAD, GOOD, FeedSource, held_predictor, part_bytes, wait_for


def result(frame: Frame, status: str, decision: str | None = None) -> Result:
    return Result(frame, status, 1, decision=decision, ok=None if decision is None else decision == "ok")


def test_sort_puts_each_image_under_its_decision_and_never_overwrites(tmp_path) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(b"first")
    sink = SortSink(tmp_path / "out")
    sink.open(None)  # type: ignore[arg-type]
    frame = Frame(b"first", "a.png", "test", path=src)
    sink.publish(result(frame, "ok", "defect"))
    src.write_bytes(b"second")
    sink.publish(result(frame, "ok", "defect"))
    sink.publish(result(Frame(b"x", "../../escape.png", "test"), "needs_review"))
    sink.publish(result(Frame(np.zeros((4, 5), np.uint8), "cam-7", "test"), "dropped"))
    out = tmp_path / "out"
    assert (out / "defect" / "a.png").read_bytes() == b"first" and (
        out / "defect" / "a-1.png"
    ).read_bytes() == b"second"
    assert [p.name for p in (out / "needs_review").iterdir()] == ["_.._escape.png"]  # inside its folder
    assert [p.name for p in (out / "dropped").iterdir()] == ["cam-7.png"]
    assert src.exists()  # copied, not moved


def test_sort_move_mode_takes_the_file(tmp_path) -> None:
    src = tmp_path / "b.png"
    src.write_bytes(b"data")
    sink = SortSink(tmp_path / "out", mode="move")
    sink.open(None)  # type: ignore[arg-type]
    sink.publish(result(Frame(b"data", "b.png", "test", path=src), "error"))
    assert not src.exists() and (tmp_path / "out" / "error" / "b.png").read_bytes() == b"data"


def test_metrics_count_frames_results_drops_and_latency_on_a_port_the_system_picks(tmp_path) -> None:
    import_or_missing("prometheus_client", flag="SERVE", reason="metrics use prometheus_client (the [serve] extra)")
    from defectlens.line.metrics import LineMetrics

    metrics = LineMetrics("m1")
    port = metrics.serve(0, "127.0.0.1")
    assert port > 0
    predictor, release, busy = held_predictor()
    source = FeedSource()
    with InspectionLog(tmp_path / "log.sqlite") as log:
        station = Station(source=source, predictor=predictor, log=log, queue_size=1, policy="drop", metrics=metrics)
        with station:
            source.put(part_bytes(tmp_path, GOOD), "a")
            wait_for(busy.is_set, "the model to be busy")
            for name in ("b", "c", "d"):
                source.put(part_bytes(tmp_path, BAD), name)
            wait_for(lambda: station.stats.results.get("dropped", 0) == 2, "two drops")
            release.set()
            station.stop()
            assert station.wait(60)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    metrics.close()
    assert "defectlens_line_frames_total 4.0" in text
    assert 'defectlens_line_results_total{status="ok"} 2.0' in text
    assert 'defectlens_line_results_total{status="dropped"} 2.0' in text
    assert "defectlens_line_latency_seconds_count 4.0" in text and 'station="m1"' in text


def test_two_stations_keep_their_metrics_apart() -> None:
    import_or_missing("prometheus_client", flag="SERVE", reason="metrics use prometheus_client (the [serve] extra)")
    from defectlens.line.metrics import LineMetrics

    one, two = LineMetrics("one"), LineMetrics("two")
    one.frame_in()
    assert b"defectlens_line_frames_total 1.0" in one.render() and b"defectlens_line_frames_total 0.0" in two.render()


def test_station_paths_stay_paths(tmp_path: Path) -> None:
    sink = SortSink.from_config({"type": "sort", "path": "sorted"}, station="s", base=tmp_path)
    assert sink.out == tmp_path / "sorted"
