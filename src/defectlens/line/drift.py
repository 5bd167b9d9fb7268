"""A station's drift watch: every frame the model judged into :class:`~defectlens.inference.drift.DriftWatch`,
an alarm or its clearing as a station event (``drift_alarm`` / ``drift_cleared``: the event log, the terminal's
status line), and the watch's state as the station's metrics (:meth:`LineMetrics.drift`).

The watch follows the model that judged each frame: after a model swap the first frame of the new model
rebuilds the reference and starts a new window. Dropped frames and errors are not counted (they carry no
image statistics and no decision).

Its settings come from the station file's ``drift:`` section (:class:`~defectlens.inference.drift.DriftConfig`);
``enabled: false`` turns it off (no watch, the window-size gauge 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from defectlens.inference.drift import DriftConfig, DriftEvent, DriftKind, DriftWatch
from defectlens.line.metrics import LineMetrics

if TYPE_CHECKING:
    from defectlens.inference.predictor import Prediction, Predictor


class StationDrift:
    """The drift watch of one station (called from its deciding thread only)."""

    def __init__(self, metrics: object | None = None, config: DriftConfig | None = None, *, enabled: bool = True):
        self.metrics = metrics if isinstance(metrics, LineMetrics) else None
        self.config = config or DriftConfig()
        self.enabled = enabled
        self.watch: DriftWatch | None = None
        if self.metrics is not None:
            self.metrics.drift_window(self.config.window if enabled else 0)

    def observe(
        self, predictor: Predictor, prediction: Prediction, emit: Callable[[DriftKind, str], None] | None = None
    ) -> DriftEvent | None:
        """Count one judged frame; an alarm raised or cleared is handed to ``emit(kind, text)`` and returned."""
        if not self.enabled:
            return None
        if self.watch is None:
            self.watch = DriftWatch.for_predictor(predictor, self.config)
        else:
            self.watch.follow(predictor)
        event = self.watch.observe_prediction(prediction)
        if self.metrics is not None:
            self.metrics.drift(self.watch.status(), raised=event is not None and event.kind == "drift_alarm")
        if event is not None and emit is not None:
            emit(event.kind, event.text)
        return event
