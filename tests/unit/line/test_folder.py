"""The hot folder on the real file system (inotify, and watchdog's polling observer): a file is inspected once,
when complete, with its full content; renames in count, files already there go first in arrival order; a
restart inspects nothing twice; bad files give error rows and the station goes on."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from tests.require import import_or_missing

import_or_missing("watchdog", flag="LINE", reason="the hot folder needs watchdog (the [line] extra)")

from defectlens.inspections import Filters, InspectionLog  # noqa: E402
from defectlens.line.folder import FileFrame, FolderSource, Ledger  # noqa: E402
from defectlens.line.station import Station  # noqa: E402
from tests.helpers import scripted_predictor  # noqa: E402
from tests.unit.line.station_helpers import BAD, GOOD, RecordingSink, held_predictor, part_bytes, wait_for  # noqa: E402

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify's close events are Linux's")


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    return tmp_path / "in"


@pytest.fixture
def log(tmp_path: Path):
    with InspectionLog(tmp_path / "log.sqlite") as opened:
        yield opened


def station_on(inbox: Path, log: InspectionLog, *, sink: RecordingSink | None = None, predictor=None, **options):
    source = FolderSource(inbox, settle=0.2, interval=0.1, **options)
    sink = sink or RecordingSink()
    station = Station(source=source, predictor=predictor or scripted_predictor(), log=log, sinks=[sink], name="hf")
    return station, sink


def names_logged(log: InspectionLog) -> list[str]:
    return [row.client_name for row in reversed(log.query(Filters(station="hf"), limit=1000))]


@linux_only
def test_a_file_written_in_pieces_is_inspected_once_after_it_is_closed_with_its_full_content(
    tmp_path, inbox, log
) -> None:
    content = part_bytes(tmp_path, BAD)
    station, sink = station_on(inbox, log)
    with station:
        with (inbox / "slow.png").open("wb") as f:
            for i in range(0, len(content), 16):  # a PLC writing over a slow link
                f.write(content[i : i + 16])
                f.flush()
                os.fsync(f.fileno())
                threading.Event().wait(0.01)
            assert log.count() == 0  # modified, not closed: nothing yet
        wait_for(lambda: log.count() == 1, "the closed file's row")
        station.stop()
    (row,) = log.query()
    assert row.image_sha256 == hashlib.sha256(content).hexdigest() and row.prediction == "defect"
    assert (inbox / "done" / "slow.png").read_bytes() == content and not (inbox / "slow.png").exists()
    assert len(sink.results) == 1


@linux_only
def test_files_renamed_into_the_folder_count_and_temporary_names_do_not(tmp_path, inbox, log) -> None:
    outside = tmp_path / "staging"
    outside.mkdir()
    station, _ = station_on(inbox, log)
    with station:
        (outside / "a.png").write_bytes(part_bytes(tmp_path, GOOD))
        (outside / "a.png").rename(inbox / "a.png")  # from another folder on the same disk
        (inbox / ".b.png.tmp").write_bytes(part_bytes(tmp_path, BAD))
        (inbox / ".b.png.tmp").rename(inbox / "b.png")  # written under a hidden name, then renamed
        wait_for(lambda: log.count() == 2, "both renamed files")
        station.stop()
    assert sorted(names_logged(log)) == ["a.png", "b.png"]
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["a.png", "b.png"]


def test_files_there_before_start_go_first_in_arrival_order(tmp_path, inbox, log) -> None:
    data = part_bytes(tmp_path, GOOD)
    for i, name in enumerate(["c.png", "a.png", "b.png"]):  # arrival order c, a, b (names sort otherwise)
        (inbox / name).write_bytes(data)
        os.utime(inbox / name, ns=(1_700_000_000_000_000_000 + i * 10**9,) * 2)
    station, sink = station_on(inbox, log)
    with station:
        wait_for(lambda: log.count() == 3, "the three waiting files")
        (inbox / "d.png").write_bytes(data)
        wait_for(lambda: log.count() == 4, "the live file")
        station.stop()
    assert names_logged(log) == ["c.png", "a.png", "b.png", "d.png"]
    assert [r.frame.name for r in sink.results] == ["c.png", "a.png", "b.png", "d.png"]
    assert sink.results[0].frame.captured_utc.startswith("2023-11-14T22:13:20")  # the file's time, not ours


@pytest.mark.parametrize("after", ["move", "leave"])
def test_a_restart_inspects_nothing_twice_and_what_arrived_meanwhile_once(tmp_path, inbox, log, after) -> None:
    data = part_bytes(tmp_path, GOOD)
    for name in ("1.png", "2.png"):
        (inbox / name).write_bytes(data)
    station, _ = station_on(inbox, log, after=after)
    with station:
        wait_for(lambda: log.count() == 2, "the first two files")
        station.stop()
    (inbox / "3.png").write_bytes(data)  # while the station is down
    station, _ = station_on(inbox, log, after=after)
    with station:
        wait_for(lambda: log.count() == 3, "the file that came while down")
        station.stop()
    assert sorted(names_logged(log)) == ["1.png", "2.png", "3.png"]
    left = sorted(p.name for p in inbox.iterdir() if p.is_file())
    assert left == ([] if after == "move" else ["1.png", "2.png", "3.png"])


def test_a_claim_the_log_has_is_published_again_never_decided_again(tmp_path, inbox, log) -> None:
    """The crash windows: claimed and logged but not finished (published again, not re-decided); claimed but
    never logged (decided); finished but not yet moved (moved only)."""
    data, other = part_bytes(tmp_path, GOOD), part_bytes(tmp_path, BAD, "q.png")
    logged, unlogged, finished = inbox / "logged.png", inbox / "unlogged.png", inbox / "finished.png"
    logged.write_bytes(data)
    unlogged.write_bytes(other)
    finished.write_bytes(data)
    ledger = Ledger(inbox / ".defectlens" / "ledger.sqlite")
    keys = {p.name: (os.fsencode(p.name), p.stat().st_size, p.stat().st_mtime_ns) for p in (logged, unlogged, finished)}
    for name, payload in (("logged.png", data), ("unlogged.png", other), ("finished.png", data)):
        ledger.claim(keys[name], display=name, sha256=hashlib.sha256(payload).hexdigest(), after_id=0)
    ledger.finish(keys["finished.png"], 99)
    ledger.close()
    from defectlens.inspections import NewInspection

    first_id = log.record(
        NewInspection(source="folder:x", client_name="logged.png", image_sha256=hashlib.sha256(data).hexdigest(),
                      image_bytes=len(data), prediction="ok", probabilities={"ok": 0.8, "defect": 0.2}, station="hf")
    )  # fmt: skip
    station, sink = station_on(inbox, log)
    with station:
        wait_for(lambda: log.count() == 2, "the unlogged file's row")
        station.stop()
    assert sorted(names_logged(log)) == ["logged.png", "unlogged.png"]
    first = sink.results[0]  # published again (its row was logged before the crash), then the rest
    assert (first.frame.name, first.inspection_id, first.ok) == ("logged.png", first_id, True)
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["finished.png", "logged.png", "unlogged.png"]


def test_polling_mode_waits_for_a_file_to_stop_growing(tmp_path, inbox, log) -> None:
    content = part_bytes(tmp_path, BAD)
    station, _ = station_on(inbox, log, poll=True)
    with station:
        (inbox / "net.png").write_bytes(content)
        wait_for(lambda: log.count() == 1, "the polled file")
        station.stop()
    (row,) = log.query()
    assert row.image_sha256 == hashlib.sha256(content).hexdigest() and row.prediction == "defect"
    assert (inbox / "done" / "net.png").exists()


def test_corrupt_and_foreign_files_give_error_rows_and_the_line_goes_on(tmp_path, inbox, log) -> None:
    good = part_bytes(tmp_path, GOOD)
    station, sink = station_on(inbox, log)
    with station:
        (inbox / "truncated.png").write_bytes(good[: len(good) // 2])
        (inbox / "notes.txt").write_text("not an image")
        (inbox / "after.png").write_bytes(good)
        wait_for(lambda: log.count() == 3, "three rows")
        station.stop()
    by_name = {r.frame.name: r for r in sink.results}
    assert by_name["truncated.png"].status == "error" and by_name["notes.txt"].status == "error"
    assert by_name["truncated.png"].ok is None and by_name["truncated.png"].reason
    assert by_name["after.png"].ok is True
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["after.png", "notes.txt", "truncated.png"]


@linux_only
def test_a_file_that_vanishes_before_it_is_read_gives_an_error_row_naming_it(tmp_path, inbox, log) -> None:
    predictor, release, busy = held_predictor()
    source = FolderSource(inbox, settle=0.2)
    sink = RecordingSink()
    station = Station(source=source, predictor=predictor, log=log, sinks=[sink], name="hf", queue_size=1)
    data = part_bytes(tmp_path, GOOD)
    with station:
        for name in ("1.png", "2.png", "3.png"):  # one at the model, one queued, one held by the capture thread
            (inbox / name).write_bytes(data)
        wait_for(lambda: busy.is_set() and station.stats.frames_in == 3, "the queue to fill")
        (inbox / "gone.png").write_bytes(data)
        (inbox / "gone.png").unlink()  # closed, then deleted before the station could read it
        release.set()
        wait_for(lambda: log.count() == 4, "four rows")
        station.stop()
    gone = next(r for r in sink.results if r.frame.name == "gone.png")
    assert gone.status == "error" and "gone.png" in gone.reason and "vanished" in gone.reason


@linux_only
def test_any_file_name_is_data(tmp_path, inbox, log) -> None:
    data = part_bytes(tmp_path, GOOD)
    raw = os.fsencode(inbox) + b"/part\n\xff [1].png"  # a newline and a byte that is not UTF-8
    station, _ = station_on(inbox, log)
    with station:
        with open(raw, "wb") as f:
            f.write(data)
        wait_for(lambda: log.count() == 1, "the oddly named file")
        station.stop()
    (row,) = log.query()
    assert row.client_name == "part\n\\xff [1].png" and row.prediction == "ok"
    assert os.listdir(os.fsencode(inbox / "done")) == [b"part\n\xff [1].png"]


def test_the_ledger_alone_keeps_a_left_file_from_a_second_inspection(tmp_path, inbox, log) -> None:
    (inbox / "x.png").write_bytes(part_bytes(tmp_path, GOOD))
    source = FolderSource(inbox, after="leave", settle=0.1)
    source.open()
    stop = threading.Event()
    frames = source.frames(stop)
    frame = next(frames)
    assert isinstance(frame, FileFrame) and frame.key is not None
    source.done(frame, sink_result(frame))
    stop.set()
    assert list(frames) == []
    source.close()
    again = FolderSource(inbox, after="leave", settle=0.1)
    again.open()
    stop = threading.Event()
    stop.set()
    assert list(again.frames(stop)) == []  # known to the ledger: not inspected again
    again.close()
    shutil.rmtree(inbox / ".defectlens")


def sink_result(frame):
    from defectlens.line.base import Result

    return Result(frame, "ok", 1, decision="ok", ok=True)


@linux_only
def test_a_finished_file_leaves_by_link_and_unlink_so_no_move_event_holds_up_the_next(tmp_path, inbox) -> None:
    """A rename out of the folder is an IN_MOVED_FROM watchdog cannot pair (done/ is not watched): it holds the
    event 0.5 s at the head of its queue, and each file closed meanwhile waited behind it (bench_line found it)."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers.inotify import InotifyObserver

    from defectlens.line.folder import _move_out

    kinds: list[str] = []
    handler = FileSystemEventHandler()
    handler.on_any_event = lambda event: kinds.append(event.event_type)  # type: ignore[method-assign]
    done = inbox / "done"
    done.mkdir()
    (inbox / "a.png").write_bytes(b"a")
    inode = (inbox / "a.png").stat().st_ino
    observer = InotifyObserver(generate_full_events=True)
    observer.schedule(handler, str(inbox), recursive=False)
    observer.start()
    try:
        _move_out(inbox / "a.png", done / "a.png")
        wait_for(lambda: {"deleted", "moved"} & set(kinds), "the file leaving the folder")
    finally:
        observer.stop()
        observer.join()
    assert "moved" not in kinds and (done / "a.png").stat().st_ino == inode and not (inbox / "a.png").exists()
    (inbox / "b.png").write_bytes(b"b")
    os.link(inbox / "b.png", done / "b.png")  # a crash between link and unlink: only the unlink is left to do
    _move_out(inbox / "b.png", done / "b-1.png")
    assert sorted(p.name for p in done.iterdir()) == ["a.png", "b.png"] and not (inbox / "b.png").exists()
