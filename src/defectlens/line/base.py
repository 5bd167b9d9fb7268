"""What a station moves: a :class:`Frame` from a source, a :class:`Result` to each sink.

A station (:mod:`defectlens.line.station`) owns one source, one Predictor, the inspection log and any
number of sinks. Sources and sinks never see each other or the model: a source yields frames, the
station decides them (or logs them as dropped) and hands every result to every sink, in order. A sink
that can trigger acquisitions (the PLC handshake of OPC UA and Modbus) does so through the
:class:`StationControl` the station gives it at :meth:`Sink.open`.

Every source and sink names its endpoint in its errors (:class:`LineError`), so a bad station file or an
unreachable broker reads as one line that says which.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from defectlens.core.errors import DefectlensError
from defectlens.inspections.store import utc_now

#: A result's outcome: a decision (``ok``), the gate would not let the model judge the frame
#: (``needs_review``), the input could not be used (``error``), or it never reached the model (``dropped``).
RESULT_STATUSES = ("ok", "needs_review", "error", "dropped")


class LineError(DefectlensError):
    """A station's source, sink or file is unusable; the message names which (exit code 2)."""


@dataclass(frozen=True)
class Frame:
    """One image as a source captured it.

    Attributes:
        data: the encoded file (hot folder: its bytes) or the pixels (cameras: an HxW or HxWx3 uint8 array).
        name: what the log shows as the file name (the file's name, or ``<source>-<counter>``).
        source: the source's endpoint, e.g. ``folder:/srv/in``, ``video:line.mp4``, ``genicam:cam0``.
        captured_utc: capture time, ISO 8601 UTC (the file closed, the camera's frame).
        captured_at: the same moment on :func:`time.monotonic`, for latencies.
        part_id: the part or trigger id where the source has one (a PLC trigger's counter).
        path: the file a hot folder read (its sink and ``done/`` handling need it).
        error: why the source has no usable image for this frame (a vanished file, a trigger whose image
            never came); the station logs it as an ``error`` row, never a decision.
    """

    data: bytes | np.ndarray
    name: str
    source: str
    captured_utc: str = field(default_factory=utc_now)
    captured_at: float = field(default_factory=time.monotonic)
    part_id: str | None = None
    path: Path | None = None
    error: str = ""


@dataclass(frozen=True)
class Result:
    """What the station tells every sink about one frame.

    ``ok`` is True for a good part, False for a defect, None when there is no decision (``needs_review``,
    ``error``, ``dropped``): a PLC must never read None as OK. ``decision`` is the class name (None without
    one); ``class_index`` its index in the model's classes.
    """

    frame: Frame
    status: str
    inspection_id: int | None
    decision: str | None = None
    class_index: int | None = None
    ok: bool | None = None
    defect_probability: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    model_id: str | None = None
    station: str = ""
    decided_utc: str = field(default_factory=utc_now)
    decided_at: float = field(default_factory=time.monotonic)

    @property
    def latency_ms(self) -> float:
        """Capture to decision, milliseconds."""
        return (self.decided_at - self.frame.captured_at) * 1000.0

    def to_message(self) -> dict[str, Any]:
        """The JSON a sink publishes (MQTT payload; the same fields everywhere)."""
        return {
            "station": self.station,
            "inspection_id": self.inspection_id,
            "status": self.status,
            "decision": self.decision,
            "class_index": self.class_index,
            "ok": self.ok,
            "defect_probability": self.defect_probability,
            "probabilities": self.probabilities,
            "reason": self.reason,
            "model_id": self.model_id,
            "file": self.frame.name,
            "source": self.frame.source,
            "part_id": self.frame.part_id,
            "captured_utc": self.frame.captured_utc,
            "decided_utc": self.decided_utc,
        }


class StationControl(Protocol):
    """What a sink may ask of its station (the PLC side of a handshake)."""

    def trigger(self, part_id: str | None = None) -> bool:
        """Ask the source for one acquisition; False when it cannot take one now (busy, not triggerable)."""
        ...

    @property
    def ready(self) -> bool:
        """The station can take a trigger now (TriggerReady): running, source triggerable, queue not full."""
        ...


@runtime_checkable
class Source(Protocol):
    """Where frames come from. ``frames`` runs on the station's capture thread until ``stop`` is set."""

    endpoint: str
    triggerable: bool

    def open(self) -> None:
        """Connect (raise :class:`LineError` naming the endpoint when it cannot)."""
        ...

    def frames(self, stop: Any) -> Iterator[Frame]:
        """Yield frames as they come; return when ``stop`` (a threading.Event) is set."""
        ...

    def trigger(self, part_id: str | None = None) -> bool:
        """One acquisition on a triggerable source; False where the source has no trigger."""
        ...

    def done(self, frame: Frame, result: Result) -> None:
        """The frame's result is logged and published: a hot folder moves or marks the file here."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """Where results go. ``publish`` is called on the station's publishing thread, in frame order."""

    endpoint: str

    def open(self, control: StationControl) -> None:
        """Connect (raise :class:`LineError` naming the endpoint when it cannot at start)."""
        ...

    def publish(self, result: Result) -> None:
        """Hand one result on; a sink that cannot reach its endpoint queues it (never drops it silently)."""
        ...

    def set_status(self, online: bool, alarm: str = "") -> None:
        """The station's state: online/offline, and an alarm text ('' when none)."""
        ...

    def close(self) -> None:
        """Flush what is queued where possible, then disconnect."""
        ...
