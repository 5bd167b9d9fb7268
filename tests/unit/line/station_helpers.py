"""Pieces for the station tests: a source fed by the test, a sink that records what it is told, a predictor
that waits for the test (to fill the queue), and a bounded wait that only guards against a hang."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from defectlens.inference.predictor import Predictor
from defectlens.line.base import Frame, Result, StationControl
from tests.helpers import LAYOUTS, scripted_predictor, write_part

DEADLINE = 60.0  # bounds a hang only; every wait returns as soon as its condition holds
GOOD = {"ok": 0.8, "defect": 0.2}  # decided "ok" at threshold 0.3
BAD = {"ok": 0.4, "defect": 0.6}  # decided "defect"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.02)


def part_bytes(tmp: Path, probabilities: dict[str, float], name: str = "p.png", layout: str = "defect_last") -> bytes:
    return write_part(tmp / name, probabilities, LAYOUTS[layout][0]).read_bytes()


class FeedSource:
    """A source the test feeds (``put``); ``frames`` ends when stopped, after what was fed."""

    endpoint = "test:feed"

    def __init__(self, *, triggerable: bool = False):
        self.triggerable = triggerable
        self.fed: queue.Queue[Frame] = queue.Queue()
        self.done_calls: list[tuple[Frame, Result]] = []
        self.triggers: list[str | None] = []
        self.opened = self.closed = False
        self.read = 0  # frames handed to the station

    def put(self, data: bytes | np.ndarray, name: str = "frame") -> None:
        self.fed.put(Frame(data=data, name=name, source=self.endpoint))

    def open(self) -> None:
        self.opened = True

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        while not (stop.is_set() and self.fed.empty()):
            try:
                frame = self.fed.get(timeout=0.02)
            except queue.Empty:
                continue
            self.read += 1
            yield frame

    def trigger(self, part_id: str | None = None) -> bool:
        self.triggers.append(part_id)
        return True

    def done(self, frame: Frame, result: Result) -> None:
        self.done_calls.append((frame, result))

    def close(self) -> None:
        self.closed = True


class RecordingSink:
    """Records every call; ``check`` runs on each result before it is recorded (may raise)."""

    def __init__(self, endpoint: str = "test:sink", check: Callable[[Result], None] | None = None):
        self.endpoint = endpoint
        self.check = check
        self.results: list[Result] = []
        self.statuses: list[tuple[bool, str]] = []
        self.control: StationControl | None = None
        self.closed = False

    def open(self, control: StationControl) -> None:
        self.control = control

    def publish(self, result: Result) -> None:
        if self.check is not None:
            self.check(result)
        self.results.append(result)

    def set_status(self, online: bool, alarm: str = "") -> None:
        self.statuses.append((online, alarm))

    def close(self) -> None:
        self.closed = True


def held_predictor(layout: str = "defect_last") -> tuple[Predictor, threading.Event, threading.Event]:
    """A scripted predictor whose model call waits for ``release``; ``busy`` is set while one waits."""
    inner = scripted_predictor(layout)
    release, busy = threading.Event(), threading.Event()

    def run(x: np.ndarray) -> np.ndarray:
        busy.set()
        assert release.wait(DEADLINE), "the test never released the model"
        return inner._run(x)

    return Predictor(run, inner.spec, backend="scripted", model_id=inner.model_id), release, busy
