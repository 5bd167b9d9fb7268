"""The station: one source, one Predictor, the inspection log and the sinks, on three threads.

The steps, once each per frame, in this order (the contract every source and sink is written against):

1. **capture** (capture thread): ``source.frames(stop)`` yields a :class:`~defectlens.line.base.Frame` into a
   bounded queue. A full queue is the backpressure point: policy ``hold`` stops reading the source (``ready`` is
   False, so a PLC sees TriggerReady false) until there is room; policy ``drop`` logs the frame as ``dropped``
   with the reason and raises an alarm. No frame is ever lost silently: it is decided or logged as dropped.
2. **decide** (decision thread): one Predictor call per frame, then the row is committed to the inspection log
   (its id is the result's ``inspection_id``) before anyone hears of it.
3. **publish** (publishing thread): the :class:`~defectlens.line.base.Result` goes to every sink in order (a sink
   that raises is counted and reported; the station goes on), then ``source.done(frame, result)`` (a hot folder
   moves the file). Results are published in the order their rows were logged.

``ok`` is True only for a decision of a good class: a frame the gate refused, an unusable input or a dropped
frame gives None (no decision), never OK. ``alarm_after`` such frames in a row raise a station alarm on every
sink; a dropped frame raises one at once. :meth:`Station.stop` (SIGTERM, Ctrl-C) stops the source, decides what
is queued, publishes the last results, marks every sink offline and closes them.

The model can be swapped while the line runs (:meth:`Station.swap`; SIGHUP in ``defectlens line``): the new
bundle is loaded, checked and warmed up beside the one deciding (:class:`~defectlens.inference.swap.ModelSlot`),
then put in force between two frames. A frame is decided, logged and published with the model that took it
(its row's ``model_id``); a bundle that cannot be used leaves the old model deciding and raises a
``model_swap_failed`` event.

With an image store (``store_images:``) each judged frame's image is kept before its row is logged (the bytes as
the source read them; a camera's pixels as a lossless PNG), and the row names it (``image_path``): operator
verdicts on those rows become training data (``defectlens data import --from-log``). A store that cannot take
an image never costs the inspection: the row is logged without the path, counted, and a ``store_error`` event
says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec
from defectlens.inference.drift import DriftConfig
from defectlens.inference.predictor import Prediction, Predictor
from defectlens.inference.swap import ModelSlot, Swapped
from defectlens.inspections.images import ImageStore
from defectlens.inspections.store import Inspection, InspectionLog, NewInspection
from defectlens.line.base import Frame, LineError, Result, Sink, Source
from defectlens.line.drift import StationDrift

#: What to do with a frame when the queue is full: stop reading the source, or log the frame as dropped.
Policy = Literal["hold", "drop"]
POLICIES: tuple[Policy, ...] = ("hold", "drop")
#: Class names taken as a good part in a multi-class model when the station file names none (case-insensitive).
DEFAULT_GOOD = ("ok", "good", "pass", "functional", "normal", "ok_front")
EventKind = Literal[
    "started",
    "result",
    "alarm",
    "alarm_cleared",
    "sink_error",
    "source_error",
    "log_error",
    "store_error",
    "stopping",
    "stopped",
    "model_swapped",
    "model_swap_failed",
    "drift_alarm",
    "drift_cleared",
]
#: The events a sink with ``publish_event`` (MQTT) hands to the MES, beside the results.
PUBLISHED_EVENTS = frozenset({"drift_alarm", "drift_cleared", "model_swapped", "model_swap_failed"})
_END = object()  # the end of a queue: everything before it is handled, nothing comes after


class StationMetrics(Protocol):
    """What the station reports to its metrics (see :mod:`defectlens.line.metrics`)."""

    def frame_in(self) -> None: ...
    def result(self, status: str, latency_s: float) -> None: ...
    def queue_depth(self, depth: int) -> None: ...
    def sink_error(self, sink: str) -> None: ...
    def store_error(self) -> None: ...


@runtime_checkable
class Resumable(Protocol):
    """A source that keeps a ledger across restarts (the hot folder): before capture starts, it reconciles the
    ledger with the log and returns the frames that were logged but maybe not published, with their ids."""

    def resume(self, log: InspectionLog, station: str) -> list[tuple[Frame, int]]: ...


@dataclass(frozen=True)
class StationEvent:
    """One thing that happened, for the status line or the event log."""

    kind: EventKind
    text: str = ""
    result: Result | None = None


@dataclass
class StationStats:
    """Running counts (read by the status line; written by the station's threads)."""

    frames_in: int = 0
    results: dict[str, int] = field(default_factory=dict)  # by status: ok, needs_review, error, dropped
    sink_errors: dict[str, int] = field(default_factory=dict)
    store_errors: int = 0  # images the store could not take (their rows are logged without image_path)
    alarm: str = ""
    last: Result | None = None

    @property
    def published(self) -> int:
        return sum(self.results.values())


def good_classes(spec: ModelSpec, configured: Sequence[str] | None = None) -> frozenset[str]:
    """The classes that mean a good part: for a binary model every class but its defect class; otherwise
    ``configured`` (the station file's ``good:``) or the classes named like :data:`DEFAULT_GOOD`.

    Raises:
        LineError: for a configured class the model does not have, or a multi-class model with no good class.
    """
    names = spec.class_names
    unknown = [c for c in configured or () if c not in names]
    if unknown:
        raise LineError(f"good: {unknown[0]!r} is not a class of the model (classes: {', '.join(names)})")
    if spec.positive_class is not None and len(names) == 2:
        good = frozenset(c for c in names if c != spec.positive_class)
        if configured and set(configured) != good:
            raise LineError(
                f"good: {list(configured)} disagrees with the model, whose defect class is {spec.positive_class!r}"
            )
        return good
    if configured:
        return frozenset(configured)
    found = frozenset(c for c in names if c.lower() in DEFAULT_GOOD)
    if not found:
        raise LineError(
            f"the model's classes ({', '.join(names)}) name no good class: set 'good: [CLASS, ...]' in the "
            "station file (the classes a PLC may take as OK)"
        )
    return found


def _digest(data: bytes | np.ndarray) -> tuple[str, int]:
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    return hashlib.sha256(raw).hexdigest(), len(raw)


def _encoded(data: bytes | np.ndarray) -> tuple[bytes, str | None]:
    """A frame's image as a file and its format: the bytes a source read, as they are (their format from the
    header), or a camera's pixels as a lossless PNG."""
    from PIL import Image

    if isinstance(data, np.ndarray):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(data)).save(buf, "PNG")
        return buf.getvalue(), "PNG"
    raw = bytes(data)
    try:
        with Image.open(io.BytesIO(raw)) as im:  # reads the header only
            return raw, im.format
    except Exception:  # stored all the same, as .img: the model judged it
        return raw, None


class Station:
    """One running station (see the module docstring for the steps and the guarantees).

    Args:
        source: where frames come from.
        predictor: the model (one call per frame).
        log: the inspection log (the station writes; the caller closes it).
        sinks: where results go, in this order.
        name: the station's name (the log's ``station`` column, the sinks' topic or node).
        queue_size: frames waiting between capture and the model.
        policy: ``hold`` (stop reading the source while the queue is full) or ``drop`` (log the frame as dropped).
        alarm_after: frames in a row without a decision that raise the station alarm.
        good: the good classes of a multi-class model (see :func:`good_classes`).
        metrics: instruments to update (None: none).
        on_event: called with every :class:`StationEvent`, from the station's threads.
        store: where to keep each judged frame's image (None: only its hash is logged).
        drift: the drift watch's settings (None: its defaults).
        watch_drift: False turns the drift watch off.
    """

    def __init__(
        self,
        *,
        source: Source,
        predictor: Predictor,
        log: InspectionLog,
        sinks: Iterable[Sink] = (),
        name: str = "station",
        queue_size: int = 8,
        policy: Policy = "hold",
        alarm_after: int = 3,
        good: Sequence[str] | None = None,
        metrics: StationMetrics | None = None,
        on_event: Callable[[StationEvent], None] | None = None,
        store: ImageStore | None = None,
        drift: DriftConfig | None = None,
        watch_drift: bool = True,
    ):
        if policy not in POLICIES:
            raise LineError(f"queue policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if queue_size < 1 or alarm_after < 1:
            raise LineError(f"queue size and alarm_after must be at least 1, got {queue_size} and {alarm_after}")
        self.source, self.log = source, log
        self.slot = ModelSlot(predictor)
        self.sinks = list(sinks)
        self.name, self.policy, self.alarm_after = name, policy, alarm_after
        self._good = tuple(good) if good else None
        good_classes(predictor.spec, good)  # refuse a model with no good class at once
        self.metrics = metrics
        self.store = store
        self.drift = StationDrift(metrics, drift, enabled=watch_drift)  # follows each frame's model id (swaps)
        self.stats = StationStats()
        self._on_event = on_event
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._published: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._order = threading.Lock()  # a row's id order is its publishing order
        self._count = threading.Lock()  # the stats, written from three threads
        self._run_without_decision = 0
        self._threads: list[threading.Thread] = []
        self._running = False
        self.source_error: BaseException | None = None

    @property
    def predictor(self) -> Predictor:
        """The model deciding now (a frame takes it once and keeps it; see the module docstring)."""
        return self.slot.current

    @property
    def good(self) -> frozenset[str]:
        """The current model's good classes (see :func:`good_classes`)."""
        return good_classes(self.predictor.spec, self._good)

    def swap(self, path: str | Path, *, allow_new_classes: bool = False) -> Swapped:
        """Decide with the bundle at ``path`` from the next frame on, without stopping the line (it is loaded,
        checked and warmed up first, on the calling thread, while the current model decides on).

        Raises:
            DefectlensError: for a bundle that cannot be used (missing, corrupt, other classes, no good class);
                the current model goes on deciding and a ``model_swap_failed`` event says why.
        """
        try:
            done = self.slot.swap(
                path, allow_new_classes=allow_new_classes, check=lambda p: good_classes(p.spec, self._good)
            )
        except DefectlensError as exc:
            self._event("model_swap_failed", f"station {self.name}: model {self.predictor.model_id} decides on: {exc}")
            raise
        self._event(
            "model_swapped", f"station {self.name}: now deciding with model {done.model_id} from {done.path} "
            f"(previous {done.previous_model_id}; loaded in {done.load_ms:.0f} ms)",
        )  # fmt: skip
        return done

    def swap_in_background(self, path: str | Path) -> threading.Thread:
        """:meth:`swap` on a thread of its own, for a signal handler (SIGHUP), which must not block the process;
        its outcome is a ``model_swapped`` or ``model_swap_failed`` event."""

        def run() -> None:
            with contextlib.suppress(DefectlensError):  # reported as an event; the old model decides on
                self.swap(path)

        thread = threading.Thread(target=run, name=f"{self.name}-swap", daemon=True)
        thread.start()
        return thread

    # -- StationControl (what a PLC handshake asks) ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """TriggerReady: running, the source takes triggers, and the queue has room."""
        return self._running and not self._stop.is_set() and self.source.triggerable and not self._queue.full()

    def trigger(self, part_id: str | None = None) -> bool:
        """One acquisition on a triggerable source; False when not :attr:`ready`."""
        return self.ready and bool(self.source.trigger(part_id))

    # -- life cycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the sinks and the source, publish what a restart recovered, then start capturing.

        Raises:
            LineError: naming the endpoint that cannot be opened (what was opened is closed again).
        """
        opened: list[Sink] = []
        try:
            for sink in self.sinks:
                sink.open(self)
                opened.append(sink)
            self.source.open()
            try:
                recovered = self.source.resume(self.log, self.name) if isinstance(self.source, Resumable) else []
            except BaseException:
                self.source.close()
                raise
        except BaseException:
            for sink in reversed(opened):
                with contextlib.suppress(Exception):
                    sink.close()
            raise
        self._set_status(online=True, alarm="")
        for frame, inspection_id in recovered:  # logged before a crash, maybe never published: at least once
            self._republish(frame, inspection_id)
        self._running = True
        for target, name in ((self._capture, "capture"), (self._decide_all, "decide"), (self._publish_all, "publish")):
            thread = threading.Thread(target=target, name=f"{self.name}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._event("started", f"station {self.name}: {self.source.endpoint} -> {len(self.sinks)} sink(s)")

    def stop(self) -> None:
        """Ask the source to stop; :meth:`close` drains and closes (safe from a signal handler)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued frame is published (the source ended or :meth:`stop`); True when done."""
        return self._finished.wait(timeout)

    def close(self) -> None:
        """Stop the source, decide and publish what is queued, mark every sink offline, close everything."""
        self.stop()
        for thread in self._threads:
            thread.join()
        self._running = False
        self._set_status(online=False, alarm=self.stats.alarm)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self._sink_failed(sink, "close", exc)
        with contextlib.suppress(Exception):
            self.source.close()
        self._event("stopped", f"station {self.name}: stopped after {self.stats.published} result(s)")

    def __enter__(self) -> Station:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the three threads -------------------------------------------------------------------------------------------

    def _capture(self) -> None:
        try:
            for frame in self.source.frames(self._stop):
                self._admit(frame)
        except Exception as exc:  # the camera is gone: report it; what is queued is still decided
            self.source_error = exc
            self._event("source_error", f"source {self.source.endpoint} failed: {exc}")
        finally:
            if self._stop.is_set():
                queued = self._queue.qsize()
                self._event("stopping", f"station {self.name}: source stopped; deciding {queued} queued frame(s)")
            self._queue.put(_END)

    def _admit(self, frame: Frame) -> None:
        with self._count:
            self.stats.frames_in += 1
        if self.metrics is not None:
            self.metrics.frame_in()
        if self.policy == "hold":
            self._queue.put(frame)  # blocks: the source is not read (and ready is False) until there is room
        else:
            try:
                self._queue.put_nowait(frame)
            except queue.Full:
                self._drop(frame, f"queue full ({self._queue.maxsize} frames waiting)")
        if self.metrics is not None:
            self.metrics.queue_depth(self._queue.qsize())

    def _drop(self, frame: Frame, reason: str) -> None:
        sha, size = _digest(frame.data)
        row = NewInspection(
            source=frame.source, client_name=frame.name, image_sha256=sha, image_bytes=size, status="dropped",
            reason=reason, model_id=self.predictor.model_id, station=self.name, captured_utc=frame.captured_utc,
            part_id=frame.part_id,
        )  # fmt: skip
        self._log_and_queue(frame, row, Result(frame, "dropped", None, reason=reason, station=self.name))

    def _decide_all(self) -> None:
        while (frame := self._queue.get()) is not _END:
            assert isinstance(frame, Frame)
            if self.metrics is not None:
                self.metrics.queue_depth(self._queue.qsize())
            self._decide(frame)
        self._published.put(_END)

    def _decide(self, frame: Frame) -> None:
        unreadable = frame.error  # a source's own finding (a hot folder's vanished file, a lost trigger)
        predictor = self.slot.current  # the model that takes this frame, whatever swaps meanwhile
        try:
            if unreadable:
                prediction = Prediction.error(frame.name, unreadable)
            else:
                prediction = next(iter(predictor.predict_many([(frame.name, frame.data)], batch_size=1)))
        except Exception as exc:  # the model itself failed: an error row, and the line goes on
            prediction = Prediction.error(frame.name, f"the model failed on this frame ({type(exc).__name__}: {exc})")
        self.drift.observe(predictor, prediction, self._event)  # a drift_alarm / drift_cleared event
        image_path = self._store_image(frame) if prediction.status != "error" else None
        row = replace(self._row(frame, prediction, predictor), image_path=image_path)
        self._log_and_queue(frame, row, self._result(frame, row, None, predictor))

    def _store_image(self, frame: Frame) -> str | None:
        """Keep the frame's image in the store, before its row is logged; its path there, or None without a store
        or when the write failed (counted and reported: the inspection is logged all the same)."""
        if self.store is None:
            return None
        try:
            data, image_format = _encoded(frame.data)
            return self.store.put(data, image_format=image_format)
        except Exception as exc:  # a full disk must not stop the line or lose the inspection
            with self._count:
                self.stats.store_errors += 1
            if self.metrics is not None:
                self.metrics.store_error()
            self._event(
                "store_error", f"{frame.name}: image not kept in {self.store.folder} ({type(exc).__name__}: {exc}); "
                "the inspection is logged without it",
            )  # fmt: skip
            return None

    def _log_and_queue(self, frame: Frame, row: NewInspection, result: Result) -> None:
        """Commit the row, then queue the result with its id for publishing (under one lock: id order)."""
        with self._order:
            try:
                inspection_id: int | None = self.log.record(row)
            except Exception as exc:  # the PLC still hears of the frame: no decision, and the reason
                inspection_id = None
                self._event("log_error", f"{frame.name}: the inspection log refused the row ({exc})")
                result = Result(frame, "error", None, reason=f"inspection log write failed: {exc}", station=self.name)
            self._published.put(replace(result, inspection_id=inspection_id))

    def _publish_all(self) -> None:
        while (result := self._published.get()) is not _END:
            assert isinstance(result, Result)
            self._publish(result)
        self._finished.set()

    def _publish(self, result: Result) -> None:
        self._update_alarm(result)
        for sink in self.sinks:
            try:
                sink.publish(result)
            except Exception as exc:
                self._sink_failed(sink, "publish", exc)
        latency = time.monotonic() - result.frame.captured_at
        with self._count:
            self.stats.results[result.status] = self.stats.results.get(result.status, 0) + 1
            self.stats.last = result
        if self.metrics is not None:
            self.metrics.result(result.status, latency)
        if result.inspection_id is not None:  # a frame the log did not take stays with its source (a retry)
            try:
                self.source.done(result.frame, result)
            except Exception as exc:
                self._event("source_error", f"{result.frame.name}: {self.source.endpoint} could not finish it: {exc}")
        self._event("result", result=result)

    def _republish(self, frame: Frame, inspection_id: int) -> None:
        row = self.log.get(inspection_id)
        if row is None:
            return
        result = self._result(frame, row, inspection_id, self.predictor)
        self._publish(replace(result, decided_utc=row.created_utc))

    # -- rows, results, alarms -----------------------------------------------------------------------------------------

    def _row(self, frame: Frame, p: Prediction, predictor: Predictor) -> NewInspection:
        spec = predictor.spec
        sha, size = _digest(frame.data)
        decided = p.status == "ok"
        height, width = frame.data.shape[:2] if isinstance(frame.data, np.ndarray) else (None, None)
        return NewInspection(
            source=frame.source,
            client_name=frame.name,
            image_sha256=sha,
            image_bytes=size,
            status=p.status,
            reason=p.reason or (p.gate.reason if p.gate is not None and p.gate.flagged else ""),
            warning=p.warning,
            ood_score=p.ood_score,
            gate_flagged=None if p.gate is None else p.gate.flagged,
            prediction=p.prediction if decided else None,
            probabilities=dict(p.probabilities) if decided else {},
            defect_probability=p.defect_probability if decided else None,
            threshold=p.threshold,
            temperature=spec.temperature,
            model_id=predictor.model_id,
            latency_ms=round(p.latency_ms, 3),
            width=width,
            height=height,
            station=self.name,
            captured_utc=frame.captured_utc,
            part_id=frame.part_id,
        )

    def _result(
        self, frame: Frame, row: NewInspection | Inspection, inspection_id: int | None, predictor: Predictor
    ) -> Result:
        names = predictor.spec.class_names
        decision = row.prediction if row.status == "ok" else None
        return Result(
            frame=frame,
            status=row.status,
            inspection_id=inspection_id,
            decision=decision,
            class_index=names.index(decision) if decision in names else None,
            ok=None if decision is None else decision in good_classes(predictor.spec, self._good),
            defect_probability=row.defect_probability,
            probabilities=dict(row.probabilities),
            reason=row.reason,
            model_id=row.model_id,
            station=self.name,
        )

    def _update_alarm(self, result: Result) -> None:
        if result.ok is not None:
            self._run_without_decision = 0
            if self.stats.alarm:
                self._set_status(online=True, alarm="")
                self._event("alarm_cleared", f"station {self.name}: alarm cleared by a decision")
            return
        self._run_without_decision += 1
        if self.stats.alarm:
            return  # already raised; a decision clears it
        if result.status == "dropped":
            alarm = f"frame dropped: {result.reason}"
        elif self._run_without_decision >= self.alarm_after:
            alarm = f"{self._run_without_decision} frames in a row without a decision (last: {result.reason})"
        else:
            return
        self._set_status(online=True, alarm=alarm)
        self._event("alarm", f"station {self.name}: ALARM {alarm}")

    def _set_status(self, *, online: bool, alarm: str) -> None:
        self.stats.alarm = alarm
        for sink in self.sinks:
            try:
                sink.set_status(online, alarm)
            except Exception as exc:
                self._sink_failed(sink, "status", exc)

    def _sink_failed(self, sink: Sink, step: str, exc: Exception) -> None:
        with self._count:
            self.stats.sink_errors[sink.endpoint] = self.stats.sink_errors.get(sink.endpoint, 0) + 1
        if self.metrics is not None:
            self.metrics.sink_error(sink.endpoint)
        self._event("sink_error", f"sink {sink.endpoint}: {step} failed: {type(exc).__name__}: {exc}")

    def _event(self, kind: EventKind, text: str = "", result: Result | None = None) -> None:
        if kind in PUBLISHED_EVENTS:  # the MES hears of drift and model changes (sinks with publish_event)
            for sink in self.sinks:
                publish = getattr(sink, "publish_event", None)
                if publish is not None:
                    try:
                        publish(kind, text)
                    except Exception as exc:  # a sink's failure is counted, never fatal
                        self._sink_failed(sink, "publish_event", exc)
        if self._on_event is not None:
            with contextlib.suppress(Exception):  # a broken status line must not stop the line
                self._on_event(StationEvent(kind, text, result))
