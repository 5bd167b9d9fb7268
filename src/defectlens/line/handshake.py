"""The vision-system handshake a PLC speaks with the station, shared by the OPC UA and Modbus sinks.

This module owns the rules only: no network, no threads of its own. A sink feeds it what the PLC writes
(:meth:`Handshake.write_trigger`, :meth:`Handshake.write_ack`) and what the station publishes
(:meth:`Handshake.publish`, :meth:`Handshake.set_status`), and shows the PLC :meth:`Handshake.state`.
Every method may be called from any thread; callbacks into the station (``control.ready``,
``control.trigger``) and into listeners run outside the lock, so a station that holds its own lock while
publishing cannot deadlock with a PLC write.

Signals (PLC <- station unless marked):

- ``Trigger`` (PLC -> station): a rising edge asks the station for one acquisition, when ``TriggerReady``.
  A trigger while not ready is refused and counted (``TriggersRefused``); it never queues.
- ``TriggerReady``: the station can take a trigger (``control.ready``, online), the result FIFO is not
  full, and, with ``wait_for_ack``, no result is waiting for the PLC's acknowledgement.
- ``ResultsValid``: a result is presented. Its fields (verdict bits, class index, score, error code,
  inspection id, counter) are set before ``ResultsValid`` rises, and do not change until the PLC acks.
- ``ResultsAck`` (PLC -> station): a rising edge while ``ResultsValid`` makes the station drop
  ``ResultsValid``; the next queued result is presented only after the PLC has dropped ``ResultsAck``
  (a four-phase handshake, so the PLC can never miss an edge).
- ``OK`` / ``NG`` / ``NoDecision``: exactly one is set while ``ResultsValid``; all three are clear
  otherwise, so a PLC that reads OK without looking at ResultsValid still never passes a part. A result
  with status ``needs_review``, ``error`` or ``dropped`` is ``NoDecision`` with its :class:`ErrorCode`,
  never OK.
- ``Error`` / ``ErrorCode``: the presented result's code, else :attr:`ErrorCode.STATION_ALARM` while the
  station's alarm is raised.
- ``ResultCounter``: increments each time a result is presented (UInt32; Modbus shows it modulo 65536).

Results that come faster than the PLC acknowledges wait in a bounded FIFO and are presented in order,
each after the previous acknowledgement (the practice of Cognex, Keyence and OPC 40100 result
buffering). When the FIFO is full a further result is refused, counted (``ResultsOverrun``) and logged as
a warning: never lost silently, and ``TriggerReady`` is low while the FIFO is full, so a PLC that
respects it never overruns. Every result is in the inspection log either way.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from defectlens.line.base import Result, StationControl

log = logging.getLogger(__name__)

UINT32 = 1 << 32


class ErrorCode(IntEnum):
    """Why a presented result carries no OK/NG (the ``ErrorCode`` the PLC reads)."""

    NONE = 0
    #: The image-quality / OOD gate would not let the model judge the frame (``needs_review``).
    GATE_REFUSED = 1
    #: The input could not be used: corrupt, truncated, not an image (``error``).
    UNREADABLE = 2
    #: The frame never reached the model: queue full or station stopping (``dropped``).
    DROPPED = 3
    #: The station's alarm is raised (a run of undecided frames, a lost camera).
    STATION_ALARM = 4
    #: The model decided but the decision is neither a good part nor a defect.
    NO_VERDICT = 5


_STATUS_CODES = {"needs_review": ErrorCode.GATE_REFUSED, "error": ErrorCode.UNREADABLE, "dropped": ErrorCode.DROPPED}


@dataclass(frozen=True)
class Verdict:
    """What one result shows the PLC; ``class_index`` is -1 and ``defect_score`` -1.0 when absent."""

    ok: bool = False
    ng: bool = False
    no_decision: bool = False
    class_index: int = -1
    class_name: str = ""
    defect_score: float = -1.0
    error_code: ErrorCode = ErrorCode.NONE
    reason: str = ""
    inspection_id: int = 0
    part_id: str = ""

    @classmethod
    def of(cls, result: Result) -> Verdict:
        """The PLC's view of ``result``: OK only for a decided good part, never for a missing decision."""
        code = _STATUS_CODES.get(result.status, ErrorCode.NONE)
        if code is ErrorCode.NONE and result.ok is None:
            code = ErrorCode.NO_VERDICT
        decided = code is ErrorCode.NONE
        score = result.defect_probability
        return cls(
            ok=decided and result.ok is True,
            ng=decided and result.ok is False,
            no_decision=not decided,
            class_index=result.class_index if decided and result.class_index is not None else -1,
            class_name=(result.decision or "") if decided else "",
            defect_score=float(score) if score is not None else -1.0,
            error_code=code,
            reason=result.reason,
            inspection_id=(result.inspection_id or 0) % UINT32,
            part_id=result.frame.part_id or "",
        )


@dataclass(frozen=True)
class HandshakeState:
    """A consistent snapshot of every signal; ``ok``, ``ng``, ``no_decision`` only while ``results_valid``."""

    trigger: bool
    trigger_ready: bool
    results_valid: bool
    results_ack: bool
    ok: bool
    ng: bool
    no_decision: bool
    class_index: int
    class_name: str
    defect_score: float
    error: bool
    error_code: int
    error_text: str
    result_counter: int
    inspection_id: int
    part_id: str
    online: bool
    alarm: bool
    alarm_text: str
    pending: int
    overruns: int
    triggers: int
    triggers_refused: int

    @property
    def defect_per_mille(self) -> int:
        """The defect score as an integer 0..1000, -1 without a score."""
        if self.defect_score < 0:
            return -1
        return min(1000, max(0, round(self.defect_score * 1000)))

    @property
    def state_name(self) -> str:
        """The station's state in OPC 40100's top-level state names: Operational, Error or Halted."""
        if not self.online:
            return "Halted"
        return "Error" if self.alarm else "Operational"


class Handshake:
    """The Trigger / ResultsValid / ResultsAck state machine; see the module docstring for the rules.

    Args:
        queue_size: results that may wait for the PLC behind the presented one.
        wait_for_ack: hold ``TriggerReady`` low while any result waits for the PLC's acknowledgement.
    """

    def __init__(self, *, queue_size: int = 32, wait_for_ack: bool = False) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.queue_size = queue_size
        self.wait_for_ack = wait_for_ack
        self._lock = threading.Lock()
        self._control: StationControl | None = None
        self._listeners: list[Callable[[], None]] = []
        self._queue: deque[Verdict] = deque()
        self._shown = Verdict()
        self._valid = False
        self._trigger = False
        self._ack = False
        self._counter = 0
        self._online = False
        self._alarm = ""
        self._overruns = 0
        self._triggers = 0
        self._refused = 0
        self._trigger_seq = 0

    def attach(self, control: StationControl | None) -> None:
        """The station whose ``ready`` and ``trigger`` the PLC's Trigger reaches (None: no trigger)."""
        self._control = control
        self._changed()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (no lock held) after every change the station or PLC makes."""
        self._listeners.append(listener)

    def write_trigger(self, value: bool, part_id: str | None = None) -> bool | None:
        """The PLC wrote Trigger: on a rising edge, fire ``control.trigger``.

        Returns:
            None without a rising edge; True when the station took the trigger, False when it was refused.
        """
        ready = self._control_ready()
        seq = 0
        with self._lock:
            rising = value and not self._trigger
            self._trigger = bool(value)
            fire = rising and ready and self._can_trigger()
            if rising:
                self._trigger_seq += 1
                seq = self._trigger_seq
        if not rising:
            self._changed()
            return None
        taken = fire and self._control is not None and self._control.trigger(part_id or f"plc-{seq}")
        with self._lock:
            if taken:
                self._triggers += 1
            else:
                self._refused += 1
        if not taken:
            log.warning("PLC trigger %d refused: TriggerReady was low or the source took no trigger", seq)
        self._changed()
        return bool(taken)

    def write_ack(self, value: bool) -> None:
        """The PLC wrote ResultsAck: a rising edge drops ResultsValid, a falling edge presents the next result."""
        with self._lock:
            rising = value and not self._ack
            falling = self._ack and not value
            self._ack = bool(value)
            if rising and self._valid:
                self._valid = False
            elif falling and not self._valid and self._queue:
                self._present(self._queue.popleft())
        self._changed()

    def publish(self, result: Result) -> bool:
        """Present ``result`` now, or queue it behind the unacknowledged ones; False when the FIFO is full."""
        verdict = Verdict.of(result)
        overruns = 0
        with self._lock:
            if not self._valid and not self._ack and not self._queue:
                self._present(verdict)
            elif len(self._queue) < self.queue_size:
                self._queue.append(verdict)
            else:
                self._overruns += 1
                overruns = self._overruns
        if overruns:
            log.warning(
                "PLC result FIFO full (%d waiting for ResultsAck): inspection %s not presented (overrun %d)",
                self.queue_size,
                result.inspection_id,
                overruns,
            )
            self._changed()
            return False
        self._changed()
        return True

    def set_status(self, online: bool, alarm: str = "") -> None:
        """The station's state and alarm text ('' when none)."""
        with self._lock:
            self._online = bool(online)
            self._alarm = alarm
        self._changed()

    def state(self) -> HandshakeState:
        """Every signal, consistently, as the PLC should see it now."""
        ready = self._control_ready()
        with self._lock:
            shown = self._shown
            valid = self._valid
            code = shown.error_code or (ErrorCode.STATION_ALARM if self._alarm else ErrorCode.NONE)
            text = shown.reason if shown.error_code else self._alarm
            return HandshakeState(
                trigger=self._trigger,
                trigger_ready=ready and self._can_trigger(),
                results_valid=valid,
                results_ack=self._ack,
                ok=valid and shown.ok,
                ng=valid and shown.ng,
                no_decision=valid and shown.no_decision,
                class_index=shown.class_index,
                class_name=shown.class_name,
                defect_score=shown.defect_score,
                error=code is not ErrorCode.NONE,
                error_code=int(code),
                error_text=text,
                result_counter=self._counter,
                inspection_id=shown.inspection_id,
                part_id=shown.part_id,
                online=self._online,
                alarm=bool(self._alarm),
                alarm_text=self._alarm,
                pending=len(self._queue),
                overruns=self._overruns,
                triggers=self._triggers,
                triggers_refused=self._refused,
            )

    def _present(self, verdict: Verdict) -> None:
        """Show ``verdict`` (lock held): the fields and ResultsValid change in one step for every reader."""
        self._shown = verdict
        self._counter = (self._counter + 1) % UINT32
        self._valid = True

    def _can_trigger(self) -> bool:
        """The handshake's own half of TriggerReady (lock held)."""
        if not self._online or len(self._queue) >= self.queue_size:
            return False
        return not (self.wait_for_ack and (self._valid or self._ack or self._queue))

    def _control_ready(self) -> bool:
        control = self._control
        return control is not None and bool(control.ready)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()
