"""The web service's drift watch: every decided or flagged upload into :class:`~defectlens.inference.drift.DriftWatch`,
its state as ``/metrics`` gauges (read by the page's drift panel), and an alarm as a log event.

The watch follows the model that decided each frame: after a swap the first frame of the new model rebuilds
the reference and starts a new window. Gauges (a private registry's, refreshed when ``/metrics`` is read):

* ``defectlens_drift_alarm`` 1 while an episode is open; ``defectlens_drift_alarms_total`` episodes so far;
* ``defectlens_drift_severity{check}``: each check's value over its alarm level (1: alarm), and
  ``defectlens_drift_value{check, kind}``: the PSI or the test's p-value itself;
* ``defectlens_drift_window_images``: frames in the window so far (the checks start when it holds
  ``defectlens_drift_window_size``); ``defectlens_drift_unavailable{statistic}``: 1 for each statistic the
  model's bundle cannot be watched on (an old bundle).

Its settings come from ``serve``'s ``--drift-window``, ``--drift-psi-alarm`` and ``--drift-share-alpha``;
``--no-drift`` turns it off (no watch; ``defectlens_drift_window_size`` 0).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from defectlens.inference.drift import DriftConfig, DriftEvent, DriftWatch, outcome_of

if TYPE_CHECKING:
    from defectlens.inference.gate import GateCheck
    from defectlens.inference.predictor import Predictor

_log = logging.getLogger("defectlens.serve.drift")


class ServiceDrift:
    """The watch, its gauges in ``registry`` and its log events (thread-safe)."""

    def __init__(self, registry: Any, config: DriftConfig | None = None, *, enabled: bool = True):
        from prometheus_client import Counter, Gauge

        self.config = config or DriftConfig()
        self.enabled = enabled
        self.watch: DriftWatch | None = None
        self.events: list[DriftEvent] = []  # the latest alarms and clearances, newest last (at most 50)
        self._lock = threading.Lock()
        r = registry
        self._alarm = Gauge("defectlens_drift_alarm", "1 while a drift alarm episode is open", registry=r)
        self._alarms = Counter("defectlens_drift_alarms", "Drift alarm episodes raised", registry=r)
        self._severity = Gauge(
            "defectlens_drift_severity",
            "Each drift check's value over its alarm level (1: alarm)",
            ["check"],
            registry=r,
        )
        self._value = Gauge(
            "defectlens_drift_value", "Each drift check's PSI or p-value", ["check", "kind"], registry=r
        )
        self._filled = Gauge("defectlens_drift_window_images", "Frames in the drift window so far", registry=r)
        self._size = Gauge("defectlens_drift_window_size", "Frames a full drift window holds", registry=r)
        self._unavailable = Gauge(
            "defectlens_drift_unavailable", "1 for each statistic this model cannot be watched on", ["statistic"],
            registry=r,
        )  # fmt: skip
        self._size.set(self.config.window if enabled else 0)

    def observe(self, predictor: Predictor, check: GateCheck | None, label: str | None, *, error: bool) -> None:
        """Count one upload decided (``label``), flagged by the gate or refused by it; errors are not counted."""
        if not self.enabled:
            return
        with self._lock:
            if self.watch is None:
                self.watch = DriftWatch.for_predictor(predictor, self.config)
            elif self.watch.follow(predictor):
                _log.info("drift watch: model %s: new reference, new window", predictor.model_id)
            status = "error" if error else ("needs_review" if label is None else "ok")
            event = self.watch.observe(
                stats=check.stats if check is not None else None,
                ood_score=check.ood_score if check is not None else None,
                outcome=outcome_of(status, label, check.flagged if check is not None else False),
            )
            if event is not None:
                self._record(event)

    def verdict(self, model_id: str | None, *, agreed: bool) -> None:
        """One operator verdict on a frame ``model_id`` decided, into the live agreement check (a verdict on an
        earlier model's frame says nothing about the model now watched, and is left out)."""
        with self._lock:
            if self.watch is None or model_id != self.watch.model_id:
                return
            event = self.watch.verdict(agreed=agreed)
            if event is not None:
                self._record(event)

    def _record(self, event: DriftEvent) -> None:
        self.events = [*self.events[-49:], event]
        if event.kind == "drift_alarm":
            self._alarms.inc()
            _log.warning("DRIFT ALARM (model %s, after %d frames): %s", event.model_id, event.images, event.text)
        else:
            _log.info("drift alarm cleared (model %s, after %d frames): %s", event.model_id, event.images, event.text)

    def refresh(self) -> None:
        """Bring the gauges to the watch's state (called when ``/metrics`` is read)."""
        with self._lock:
            watch = self.watch
        if watch is None:
            return
        status = watch.status()
        self._alarm.set(1 if status.alarm else 0)
        self._filled.set(status.filled)
        self._severity.clear()  # a check of the model before a swap must not linger
        self._value.clear()
        for c in status.checks:
            self._severity.labels(c.name).set(c.severity)
            self._value.labels(c.name, c.kind).set(c.value)
        self._unavailable.clear()
        for what in status.unavailable:
            self._unavailable.labels(what.split(" (")[0]).set(1)
