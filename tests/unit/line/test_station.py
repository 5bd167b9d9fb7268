"""The station core with a fed source and recording sinks: the log first, then the sinks in order, then the
source; OK only for a good class; backpressure under both policies with no silent drop; the alarm; draining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from defectlens.inspections import Filters, InspectionLog
from defectlens.line.base import Frame, LineError, Result
from defectlens.line.station import Station, good_classes
from tests.helpers import LAYOUTS, scripted_predictor
from tests.unit.line.station_helpers import (
    BAD,
    GOOD,
    FeedSource,
    RecordingSink,
    held_predictor,
    part_bytes,
    wait_for,
)


@pytest.fixture
def log(tmp_path: Path):
    with InspectionLog(tmp_path / "log.sqlite") as opened:
        yield opened


def run_frames(station: Station, source: FeedSource, frames: list[tuple[bytes, str]]) -> None:
    with station:
        for data, name in frames:
            source.put(data, name)
        station.stop()
        assert station.wait(60)


def test_each_frame_is_logged_before_any_sink_hears_of_it_and_sinks_get_it_in_order(tmp_path, log) -> None:
    source = FeedSource()
    seen_in_log: list[bool] = []
    first = RecordingSink("test:first", check=lambda r: seen_in_log.append(log.get(r.inspection_id) is not None))
    second = RecordingSink("test:second")
    station = Station(source=source, predictor=scripted_predictor(), log=log, sinks=[first, second], name="s1")
    frames = [(part_bytes(tmp_path, GOOD), "good.png"), (part_bytes(tmp_path, BAD), "bad.png"), (b"not an image", "x")]
    run_frames(station, source, frames)
    assert seen_in_log == [True, True, True]
    assert [r.inspection_id for r in first.results] == [r.inspection_id for r in second.results]
    assert [(r.status, r.decision, r.ok) for r in first.results] == [
        ("ok", "ok", True),
        ("ok", "defect", False),
        ("error", None, None),
    ]
    rows = {row.id: row for row in log.query(Filters(station="s1"))}
    assert [rows[r.inspection_id].client_name for r in first.results] == ["good.png", "bad.png", "x"]
    assert all(rows[r.inspection_id].captured_utc == r.frame.captured_utc for r in first.results)
    assert [f.name for f, _ in source.done_calls] == ["good.png", "bad.png", "x"]  # after publishing
    assert first.statuses[0] == (True, "") and first.statuses[-1][0] is False and first.closed and source.closed


@pytest.mark.parametrize("layout", ["defect_first", "three_classes"])
def test_ok_means_a_good_class_whatever_the_class_order(tmp_path, log, layout) -> None:
    classes = LAYOUTS[layout][0]
    source, sink = FeedSource(), RecordingSink()
    station = Station(source=source, predictor=scripted_predictor(layout), log=log, sinks=[sink])
    probs = {c: (0.6 if c == "ok" else 0.4 / (len(classes) - 1)) for c in classes}
    if layout == "three_classes":
        probs = {"crack": 0.6, "ok": 0.2, "scratch": 0.2}
    run_frames(station, source, [(part_bytes(tmp_path, probs, layout=layout), "p.png")])
    (result,) = sink.results
    assert result.decision == ("defect" if layout == "defect_first" else "crack")
    assert result.ok is False and result.class_index == classes.index(result.decision)


def test_a_multi_class_model_without_a_good_class_is_refused_unless_configured() -> None:
    spec = scripted_predictor("three_classes").spec.replace(class_names=("crack", "dent", "scratch"))
    with pytest.raises(LineError, match="good:"):
        good_classes(spec)
    assert good_classes(spec, ["dent"]) == {"dent"}
    with pytest.raises(LineError, match="'pass' is not a class"):
        good_classes(spec, ["pass"])
    binary = scripted_predictor().spec
    assert good_classes(binary) == {"ok"}
    with pytest.raises(LineError, match="disagrees"):
        good_classes(binary, ["defect"])


def test_a_failing_sink_is_counted_and_the_line_goes_on(tmp_path, log) -> None:
    def explode(result: Result) -> None:
        raise ConnectionError("broker gone")

    source, broken, fine = FeedSource(), RecordingSink("test:broken", check=explode), RecordingSink("test:fine")
    events = []
    station = Station(
        source=source, predictor=scripted_predictor(), log=log, sinks=[broken, fine], on_event=events.append
    )
    run_frames(station, source, [(part_bytes(tmp_path, GOOD), f"{i}.png") for i in range(3)])
    assert len(fine.results) == 3 and station.stats.sink_errors == {"test:broken": 3}
    assert sum(e.kind == "sink_error" and "broker gone" in e.text for e in events) == 3
    assert log.count() == 3


def test_drop_policy_logs_every_frame_it_cannot_queue_and_raises_the_alarm(tmp_path, log) -> None:
    predictor, release, busy = held_predictor()
    source, sink = FeedSource(), RecordingSink()
    station = Station(source=source, predictor=predictor, log=log, sinks=[sink], queue_size=2, policy="drop")
    data = part_bytes(tmp_path, GOOD)
    with station:
        source.put(data, "f0")
        wait_for(busy.is_set, "the model to start on the first frame")
        for i in range(1, 7):  # 2 fit in the queue, 4 are dropped
            source.put(data, f"f{i}")
        wait_for(lambda: source.read == 7 and station.stats.results.get("dropped", 0) == 4, "the drops")
        assert station.stats.alarm.startswith("frame dropped: queue full (2 frames waiting)")
        release.set()
        station.stop()
        assert station.wait(60)
    statuses = [r.status for r in sink.results]
    assert statuses.count("ok") == 3 and statuses.count("dropped") == 4  # in == decided + dropped
    dropped = log.query(Filters(status="dropped"))
    assert len(dropped) == 4 and all(row.reason == "queue full (2 frames waiting)" for row in dropped)
    assert all(r.ok is None for r in sink.results if r.status == "dropped")
    assert any(alarm.startswith("frame dropped") for _, alarm in sink.statuses)
    assert sink.statuses[-1][0] is False


def test_hold_policy_stops_reading_the_source_and_says_not_ready_until_there_is_room(tmp_path, log) -> None:
    predictor, release, busy = held_predictor()
    source, sink = FeedSource(triggerable=True), RecordingSink()
    station = Station(source=source, predictor=predictor, log=log, sinks=[sink], queue_size=2, policy="hold")
    data = part_bytes(tmp_path, GOOD)
    with station:
        assert station.ready and station.trigger("part-1") and source.triggers == ["part-1"]
        for i in range(6):
            source.put(data, f"f{i}")
        wait_for(lambda: busy.is_set() and source.read == 4, "one frame at the model, two queued, one held")
        assert not station.ready and not station.trigger("part-2")  # TriggerReady false while full
        assert source.triggers == ["part-1"] and source.fed.qsize() == 2  # the source is not read
        release.set()
        station.stop()
        assert station.wait(60)
    assert [r.status for r in sink.results] == ["ok"] * 6 and log.count() == 6


def test_frames_without_a_decision_raise_the_alarm_after_n_and_a_decision_clears_it(tmp_path, log) -> None:
    source, sink = FeedSource(), RecordingSink()
    events = []
    station = Station(
        source=source, predictor=scripted_predictor(), log=log, sinks=[sink], alarm_after=3, on_event=events.append
    )
    frames = [(b"broken", f"e{i}") for i in range(4)] + [(part_bytes(tmp_path, GOOD), "good.png")]
    run_frames(station, source, frames)
    assert [r.ok for r in sink.results] == [None, None, None, None, True]  # never OK without a decision
    alarms = [alarm for online, alarm in sink.statuses if alarm]
    assert len(alarms) == 1 and alarms[0].startswith("3 frames in a row without a decision")
    assert [e.kind for e in events if e.kind.startswith("alarm")] == ["alarm", "alarm_cleared"]
    assert sink.statuses[-2] == (True, "")  # cleared by the decision, before going offline


def test_stop_decides_what_is_queued_before_closing(tmp_path, log) -> None:
    predictor, release, busy = held_predictor()
    source, sink = FeedSource(), RecordingSink()
    station = Station(source=source, predictor=predictor, log=log, sinks=[sink], queue_size=8)
    data = part_bytes(tmp_path, BAD)
    station.start()
    for i in range(5):
        source.put(data, f"f{i}")
    wait_for(lambda: busy.is_set() and source.read == 5, "the frames to be queued")
    station.stop()
    release.set()
    station.close()
    assert [r.decision for r in sink.results] == ["defect"] * 5 and log.count() == 5
    assert sink.statuses[-1][0] is False and sink.closed


def test_camera_pixels_are_logged_with_their_size(log) -> None:
    source, sink = FeedSource(), RecordingSink()
    station = Station(source=source, predictor=scripted_predictor(), log=log, sinks=[sink])
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[..., 0] = 204  # 80 % ok
    pixels[..., 1] = 51
    run_frames(station, source, [(pixels, "cam-1")])
    row = log.get(sink.results[0].inspection_id)
    assert row is not None and (row.width, row.height, row.prediction, row.station) == (30, 20, "ok", "station")


def test_a_log_that_refuses_the_row_gives_no_decision_and_leaves_the_frame_with_its_source(tmp_path, log) -> None:
    source, sink = FeedSource(), RecordingSink()
    station = Station(source=source, predictor=scripted_predictor(), log=log, sinks=[sink])
    with station:
        log.close()  # every write now fails
        source.put(part_bytes(tmp_path, GOOD), "p.png")
        station.stop()
        assert station.wait(60)
    (result,) = sink.results
    assert result.status == "error" and result.ok is None and result.inspection_id is None
    assert "inspection log write failed" in result.reason and source.done_calls == []


def test_frames_the_gate_refuses_are_never_ok_and_a_run_of_them_raises_the_alarm(log, gated_bundle) -> None:
    from defectlens.inference.predictor import Predictor

    source, sink = FeedSource(), RecordingSink()
    predictor = Predictor.load(gated_bundle, gate="refuse")
    station = Station(source=source, predictor=predictor, log=log, sinks=[sink], alarm_after=2)
    black = np.zeros((48, 48), np.uint8)  # a dead camera
    run_frames(station, source, [(black, f"black-{i}") for i in range(3)])
    assert [(r.status, r.ok) for r in sink.results] == [("needs_review", None)] * 3
    assert all(r.reason for r in sink.results)  # the PLC is told why
    alarms = [alarm for _, alarm in sink.statuses if alarm]
    assert alarms and alarms[0].startswith("2 frames in a row without a decision")
    rows = log.query()
    assert all(row.status == "needs_review" and row.prediction is None and row.gate_flagged for row in rows)


def test_a_source_that_fails_ends_the_run_after_what_it_gave_is_published(tmp_path, log) -> None:
    class Failing(FeedSource):
        def frames(self, stop):
            yield from [Frame(part_bytes(tmp_path, GOOD), f"f{i}", self.endpoint) for i in range(2)]
            raise LineError("camera cam0 gone: no frame for 10 s")

    source, sink = Failing(), RecordingSink()
    events = []
    station = Station(source=source, predictor=scripted_predictor(), log=log, sinks=[sink], on_event=events.append)
    with station:
        assert station.wait(60)  # the run ends on its own
    assert [r.status for r in sink.results] == ["ok", "ok"] and log.count() == 2
    assert isinstance(station.source_error, LineError) and "cam0 gone" in str(station.source_error)
    assert any(e.kind == "source_error" and "cam0 gone" in e.text for e in events)
    assert sink.statuses[-1][0] is False
