"""Swapping the station's model while the line runs: a frame in flight finishes on the model that took it and
the swap does not wait for it; frames keep flowing through several swaps, each row naming the model that decided
it (with that model's numbers); a bundle that cannot be used leaves the old model deciding and raises an event;
other classes only when allowed; SIGHUP makes ``defectlens line`` read its bundle file again."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import threading
from pathlib import Path

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.inference.predictor import Predictor
from defectlens.inference.swap import ClassesDiffer
from defectlens.inspections import InspectionLog
from defectlens.line.station import Station, StationEvent
from tests.helpers import CONSTANT_PROBS
from tests.unit.line.station_helpers import (
    DEADLINE,
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


@pytest.fixture(scope="module")
def constant(constant_bundle) -> Predictor:
    return Predictor.load(constant_bundle("defect_last"))


def station_with(predictor: Predictor, log: InspectionLog, events: list[StationEvent]):
    source, sink = FeedSource(), RecordingSink()
    station = Station(source=source, predictor=predictor, log=log, sinks=[sink], name="s", on_event=events.append)
    return station, source, sink


def test_a_frame_in_flight_finishes_on_the_model_that_took_it(tmp_path, log, bundle) -> None:
    held, release, busy = held_predictor()
    events: list[StationEvent] = []
    station, source, sink = station_with(held, log, events)
    new_id = Predictor.load(bundle).model_id
    with station:
        source.put(part_bytes(tmp_path, GOOD), "first.png")
        assert busy.wait(DEADLINE)
        done = station.swap(bundle)  # returns while the first frame is still in the old model
        assert not release.is_set() and (done.model_id, done.previous_model_id) == (new_id, held.model_id)
        source.put(part_bytes(tmp_path, GOOD), "second.png")
        release.set()
        station.stop()
        assert station.wait(DEADLINE)
    first, second = sink.results
    assert (first.frame.name, first.model_id) == ("first.png", held.model_id)
    assert first.probabilities == pytest.approx(GOOD, abs=1e-2)  # the held model's numbers, read from the image
    assert (second.frame.name, second.model_id) == ("second.png", new_id)
    for r in (first, second):
        row = log.get(r.inspection_id)
        assert row is not None and row.model_id == r.model_id
    assert [e.kind for e in events if e.kind.startswith("model_")] == ["model_swapped"]


def test_frames_keep_flowing_through_several_swaps(tmp_path, log, bundle, constant, constant_bundle) -> None:
    first_model = Predictor.load(bundle)
    expected = {
        first_model.model_id: lambda data: first_model.predict(data).probabilities,
        constant.model_id: lambda data: CONSTANT_PROBS["defect_last"],
    }
    events: list[StationEvent] = []
    station, source, sink = station_with(first_model, log, events)
    frames = [
        part_bytes(tmp_path, {"ok": (20 + 5 * i) / 255, "defect": (235 - 5 * i) / 255}, f"p{i}.png") for i in range(30)
    ]
    with station:
        feeding = threading.Thread(target=lambda: [source.put(f, f"p{i}.png") for i, f in enumerate(frames)])
        feeding.start()
        for target in (constant_bundle("defect_last"), bundle, constant_bundle("defect_last"), bundle):
            station.swap(target)
        feeding.join(DEADLINE)
        wait_for(lambda: len(sink.results) == len(frames), "every frame published")
        station.stop()
        assert station.wait(DEADLINE)
    assert [r.status for r in sink.results] == ["ok"] * len(frames)
    for r in sink.results:
        data = frames[int(r.frame.name[1:-4])]
        assert r.probabilities == pytest.approx(expected[r.model_id](data), abs=1e-5)
        row = log.get(r.inspection_id)
        assert row is not None and row.model_id == r.model_id
    assert [e.kind for e in events if e.kind.startswith("model_")] == ["model_swapped"] * 4
    assert station.predictor.model_id == first_model.model_id
    assert station.slot.previous is not None and station.slot.previous.model_id == constant.model_id


def test_a_bundle_that_cannot_be_used_leaves_the_old_model_deciding(tmp_path, log, constant, bundle) -> None:
    broken = tmp_path / "broken.dlens"
    broken.write_bytes(Path(bundle).read_bytes()[:1500])
    events: list[StationEvent] = []
    station, source, sink = station_with(constant, log, events)
    with station:
        with pytest.raises(DefectlensError, match=r"broken\.dlens"):
            station.swap(broken)
        source.put(part_bytes(tmp_path, GOOD), "after.png")
        station.stop()
        assert station.wait(DEADLINE)
    (result,) = sink.results
    assert result.model_id == constant.model_id and result.status == "ok"
    failed = [e for e in events if e.kind == "model_swap_failed"]
    assert len(failed) == 1 and "broken.dlens" in failed[0].text and constant.model_id in failed[0].text


def test_other_classes_only_when_allowed_and_then_ok_follows_the_new_classes(tmp_path, log, constant, constant_bundle):
    three = constant_bundle("three_classes")
    events: list[StationEvent] = []
    station, source, sink = station_with(constant, log, events)
    with station:
        with pytest.raises(ClassesDiffer, match=r"\[crack, ok, scratch\].*\[ok, defect\]"):
            station.swap(three)
        station.swap(three, allow_new_classes=True)
        source.put(part_bytes(tmp_path, GOOD), "three.png")
        station.stop()
        assert station.wait(DEADLINE)
    (result,) = sink.results
    assert result.decision == "ok" and result.ok is True and result.class_index == 1  # "ok" of crack, ok, scratch
    assert station.good == frozenset({"ok"})
    assert [e.kind for e in events if e.kind.startswith("model_")] == ["model_swap_failed", "model_swapped"]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_makes_defectlens_line_read_its_bundle_file_again(tmp_path, bundle, constant, constant_bundle) -> None:
    pytest.importorskip("watchdog", reason="the hot folder needs watchdog (the [line] extra)")
    from tests.unit.line.test_cli_line import Line, part

    inbox = tmp_path / "in"
    inbox.mkdir()
    served = tmp_path / "served.dlens"
    shutil.copyfile(bundle, served)
    line = Line(tmp_path, served, inbox)
    data = part(tmp_path)

    def model_ids() -> list[str]:
        if not line.log.exists():
            return []
        with sqlite3.connect(f"file:{line.log}?mode=ro", uri=True, timeout=30) as db:
            return [r[0] for r in db.execute("SELECT model_id FROM inspections WHERE station = 'hf' ORDER BY id")]

    (inbox / "before.png").write_bytes(data)
    wait_for(lambda: len(model_ids()) == 1, "the first row")
    os.replace(shutil.copyfile(constant_bundle("defect_last"), tmp_path / "next.dlens"), served)
    line.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: " model_swapped " in line.events.read_text(), "the model_swapped event")
    (inbox / "after.png").write_bytes(data)
    wait_for(lambda: len(model_ids()) == 2, "the second row")
    assert model_ids() == [Predictor.load(bundle).model_id, constant.model_id]
    assert line.stop(signal.SIGTERM) == 0
