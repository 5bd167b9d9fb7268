"""``defectlens line`` as a process on a real hot folder: SIGTERM drains and exits 0, Ctrl-C drains and exits
130, and ``kill -9`` while the folder is being fed loses nothing: after a restart every file is in the log
exactly once."""

from __future__ import annotations

import collections
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.require import import_or_missing, missing

import_or_missing("watchdog", flag="LINE", reason="the hot folder needs watchdog (the [line] extra)")

from tests.unit.line.station_helpers import DEADLINE, wait_for  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def logged_names(log: Path) -> list[str]:
    if not log.exists():
        return []
    with sqlite3.connect(f"file:{log}?mode=ro", uri=True, timeout=30) as db:
        try:
            return [r[0] for r in db.execute("SELECT client_name FROM inspections WHERE station = 'hf' ORDER BY id")]
        except sqlite3.OperationalError:  # created, not yet migrated
            return []


class Line:
    """One ``defectlens line`` process on ``inbox``; its events in ``events``."""

    def __init__(self, tmp_path: Path, bundle: Path, inbox: Path, sinks: tuple[str, ...] = ()):
        self.events = tmp_path / "events.log"
        self.log = tmp_path / "log.sqlite"
        cmd = [sys.executable, "-m", "defectlens", "line", "--model", str(bundle), "--source", f"folder:{inbox}",
               "--log", str(self.log), "--station", "hf", "--event-log", str(self.events)]  # fmt: skip
        for sink in sinks:
            cmd += ["--sink", sink]
        self.started_before = self.events.read_text().count(" started ") if self.events.exists() else 0
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(self._started, "the station to start")

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the station exited {self.proc.returncode}: {self.proc.stderr.read().decode()}")
        return self.events.exists() and self.events.read_text().count(" started ") > self.started_before

    def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(DEADLINE)


def part(tmp_path: Path) -> bytes:
    from PIL import Image

    Image.new("L", (32, 32), 128).save(tmp_path / "part.png")
    return (tmp_path / "part.png").read_bytes()


def test_sigterm_drains_and_exits_0_and_ctrl_c_exits_130(tmp_path, constant_bundle) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    data = part(tmp_path)
    line = Line(tmp_path, constant_bundle("defect_last"), inbox)
    names = [f"p{i:02d}.png" for i in range(12)]
    for name in names:
        (inbox / name).write_bytes(data)
    wait_for(lambda: len(logged_names(line.log)) >= 1, "the first row")
    assert line.stop(signal.SIGTERM) == 0
    events = line.events.read_text()
    logged = logged_names(line.log)
    assert "stopping" in events and f"stopped after {len(logged)} result(s)" in events  # the queue was drained
    assert sorted(p.name for p in (inbox / "done").iterdir()) == sorted(logged)
    waiting = sorted(p.name for p in inbox.iterdir() if p.is_file())
    assert sorted(logged + waiting) == names  # nothing lost: logged and done, or still waiting
    line = Line(tmp_path, constant_bundle("defect_last"), inbox)
    wait_for(lambda: len(logged_names(line.log)) == 12, "the waiting files")
    assert line.stop(signal.SIGINT) == 130
    assert sorted(logged_names(line.log)) == names


def elpv_cells(n: int) -> list[bytes]:
    """``n`` real solar-cell images (300 x 300 PNG) from the elpv-dataset package."""
    from importlib import resources

    import_or_missing("elpv_dataset", flag="EXTRAS", reason="the fed images are ELPV cells (the [train] extra)")
    root = Path(str(resources.files("elpv_dataset") / "data" / "images"))
    return [p.read_bytes() for p in sorted(root.glob("*.png"))[:n]]


def test_kill_9_while_the_folder_is_fed_then_restart_every_file_is_logged_exactly_once(tmp_path, constant_bundle):
    """The issue's fault test: every file in the log exactly once, and every logged result on MQTT at least once
    with its inspection id (the outbox on disk carries what the killed process had not sent)."""
    from tests.unit.line.mosquitto import Broker, Mes, find_mosquitto

    if find_mosquitto() is None:
        missing("LINE", "the MQTT half of the fault test needs Mosquitto (make sysdeps)")
    import_or_missing("paho.mqtt.client", flag="LINE", reason="the MQTT sink needs paho-mqtt (the [line] extra)")
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")
    broker.start()
    mes = Mes(broker.port, "fault/#")
    sinks = (f"mqtt://127.0.0.1:{broker.port}/fault",)
    cells = elpv_cells(60)
    inbox, staging = tmp_path / "in", tmp_path / "staging"
    inbox.mkdir()
    staging.mkdir()
    names = [f"part-{i:03d}.png" for i in range(60)]
    fed = threading.Event()
    pace = threading.Event()

    def feed() -> None:
        for i, (name, data) in enumerate(zip(names, cells, strict=True)):
            if i % 2:
                (staging / name).write_bytes(data)
                (staging / name).rename(inbox / name)
            else:
                with (inbox / name).open("wb") as f:  # written in two pieces
                    f.write(data[:4096])
                    f.flush()
                    f.write(data[4096:])
            pace.wait(0.02)
        fed.set()

    bundle = constant_bundle("defect_last")
    line = Line(tmp_path, bundle, inbox, sinks)
    feeder = threading.Thread(target=feed)
    feeder.start()
    wait_for(lambda: len(logged_names(line.log)) >= 10, "ten rows")
    line.proc.kill()  # kill -9, mid-stream
    line.proc.wait(DEADLINE)
    line = Line(tmp_path, bundle, inbox, sinks)
    feeder.join(DEADLINE)
    assert fed.is_set()
    wait_for(lambda: len(logged_names(line.log)) >= len(names), "every file's row")
    assert line.stop(signal.SIGTERM) == 0
    counts = collections.Counter(logged_names(line.log))
    assert sorted(counts) == names and set(counts.values()) == {1}
    with sqlite3.connect(line.log) as db:  # each row has its file's full content, none an error
        rows = dict(db.execute("SELECT client_name, image_sha256 FROM inspections WHERE status = 'ok'").fetchall())
    assert rows == {n: hashlib.sha256(c).hexdigest() for n, c in zip(names, cells, strict=True)}
    assert sorted(p.name for p in (inbox / "done").iterdir()) == names
    assert [p.name for p in inbox.iterdir() if p.is_file()] == []
    with sqlite3.connect(line.log) as db:
        logged_ids = {r[0] for r in db.execute("SELECT id FROM inspections WHERE station = 'hf'")}
    wait_for(lambda: {m["inspection_id"] for m in mes.payloads("/result")} >= logged_ids, "every result on MQTT")
    published = {m["inspection_id"]: m["file"] for m in mes.payloads("/result")}
    assert set(published) == logged_ids and sorted(published.values()) == names  # at least once, nothing foreign
    mes.close()
    broker.stop()
