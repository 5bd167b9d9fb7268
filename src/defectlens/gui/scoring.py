"""Background work for the inspector: folder scoring and one-off jobs, reported through a queue.

The window must never freeze, so anything slower than a few milliseconds (loading a model, scoring
a folder, a Grad-CAM map) runs in a daemon thread and posts its result as a message; the window
polls the queue from Tk's ``after()`` loop and is the only thread that touches the batch or a
widget. Folder scoring goes through :meth:`Predictor.predict_many` ``batch_size`` images per model
call (the Predictor's batch throughput, not one call per image); an unreadable image comes back as
an error row and the batch goes on. Each scoring run has a generation number, so results of a
folder the operator has since replaced are dropped, and its own cancel flag.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.errors import DefectlensError
from defectlens.gui.session import MetricsInput
from defectlens.inference.predictor import Prediction, Predictor


@dataclass(frozen=True)
class Scored:
    """Results for images ``start .. start + len(predictions) - 1`` of scoring run ``generation``."""

    generation: int
    start: int
    predictions: list[Prediction]


@dataclass(frozen=True)
class Finished:
    """Scoring run ``generation`` is complete: ``count`` images in ``seconds``."""

    generation: int
    count: int
    seconds: float


@dataclass(frozen=True)
class Failed:
    """Scoring run ``generation`` stopped: ``reason`` says why (the images already scored stay)."""

    generation: int
    reason: str


@dataclass(frozen=True)
class JobDone:
    """A one-off job finished: ``result`` when it succeeded, else ``error`` (a sentence for the window)."""

    kind: str
    token: Any
    result: Any = None
    error: str | None = None


Message = Scored | Finished | Failed | JobDone


class Worker:
    """Starts background threads and collects what they report (``drain`` from the UI thread)."""

    def __init__(self) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self.generation = 0
        self._cancel = threading.Event()

    def score(self, predictor: Predictor, files: Sequence[Path], *, batch_size: int = 32) -> int:
        """Score ``files`` in a background thread (cancelling any run still going); returns its generation."""
        self.cancel()
        self.generation += 1
        self._cancel = threading.Event()
        args = (predictor, [str(f) for f in files], batch_size, self.generation, self._cancel)
        threading.Thread(target=self._score, args=args, name="inspector-scoring", daemon=True).start()
        return self.generation

    def _score(
        self, predictor: Predictor, files: list[str], batch_size: int, generation: int, cancel: threading.Event
    ) -> None:
        start, done, chunk = time.perf_counter(), 0, []
        try:
            for prediction in predictor.predict_many(files, batch_size=batch_size):
                if cancel.is_set():
                    return
                chunk.append(prediction)
                if len(chunk) == batch_size:
                    self.messages.put(Scored(generation, done, chunk))
                    done, chunk = done + len(chunk), []
            if chunk:
                self.messages.put(Scored(generation, done, chunk))
            self.messages.put(Finished(generation, len(files), time.perf_counter() - start))
        except Exception as exc:  # a thread that dies silently would leave the progress bar stuck
            self.messages.put(Failed(generation, _sentence(exc)))

    def cancel(self) -> None:
        """Stop the current scoring run after its current image."""
        self._cancel.set()

    def submit(self, kind: str, fn: Callable[..., Any], *args: Any, token: Any = None) -> None:
        """Run ``fn(*args)`` in a background thread; a :class:`JobDone` of ``kind`` reports the outcome."""

        def run() -> None:
            try:
                self.messages.put(JobDone(kind, token, result=fn(*args)))
            except Exception as exc:  # reported in the window, never a traceback on the console
                self.messages.put(JobDone(kind, token, error=_sentence(exc)))

        threading.Thread(target=run, name=f"inspector-{kind}", daemon=True).start()

    def drain(self, limit: int = 200) -> list[Message]:
        """Up to ``limit`` messages waiting now (never blocks)."""
        out: list[Message] = []
        while len(out) < limit:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                break
        return out


class Figures:
    """The batch's metrics, computed by a :class:`Worker` (on a thousand images they take about 0.1 s,
    too long for the window's thread): one run at a time; requests made meanwhile are merged into one
    more run when it ends. Nothing runs before :attr:`ready`, which the first job (the warm-up) sets: the
    figures are NumPy (:mod:`defectlens.evaluation.numeric`, no scikit-learn, so the standalone Inspector
    ships without it), and the warm-up runs them once on a toy batch, off the window's thread."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.ready = self.running = self.wanted = False
        self.value: dict[str, Any] | None = None
        self.key: tuple[object, ...] | None = None
        worker.submit("warmup", _import_metrics)

    def request(self, key: tuple[object, ...], inputs: Callable[[], MetricsInput | None]) -> bool:
        """Compute the figures for ``key`` unless they are in; returns True when a job was started."""
        if key == self.key:
            return False
        if not self.ready or self.running:
            self.wanted = True
            return False
        data = inputs()
        if data is None:  # no labelled image: nothing to compute
            self.value, self.key = None, key
            return False
        self.running = True
        self.worker.submit("metrics", data.compute, token=key)
        return True

    def done(self, job: JobDone) -> bool:
        """Take a finished warm-up or metrics job; returns True when another run was asked for meanwhile."""
        if job.kind == "warmup":
            self.ready = True
        else:
            self.running = False
            if job.error is None:
                self.value, self.key = job.result, job.token
        again, self.wanted = self.wanted, False
        return again


def _import_metrics() -> None:
    MetricsInput(np.array([0, 1]), np.eye(2), ("a", "b"), 1, 0.5, (1.0, 1.0)).compute()


def _sentence(exc: Exception) -> str:
    if isinstance(exc, DefectlensError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
