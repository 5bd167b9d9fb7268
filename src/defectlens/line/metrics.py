"""A station's Prometheus metrics, served at ``http://HOST:PORT/metrics`` (``metrics: {port: N}``).

Frames in, results by status (``ok`` decisions, ``needs_review``, ``error``, ``dropped``), the queue depth,
the capture-to-published latency, sink errors by sink, and the drift watch (:mod:`defectlens.line.drift`):
``defectlens_line_drift_alarm`` (1 while an episode is open), ``defectlens_line_drift_alarms_total``,
``defectlens_line_drift_severity{check}`` (1: alarm level), ``defectlens_line_drift_window_images`` and
``defectlens_line_drift_window_size`` (0: the watch is off); images the store could not keep
(``defectlens_line_image_store_errors_total``).
Each station has its own ``CollectorRegistry``,
so two stations (or a station and the web service) in one process never mix. prometheus_client is imported
here only, when metrics are asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from defectlens.line.base import LineError

if TYPE_CHECKING:
    from defectlens.inference.drift import DriftStatus

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class LineMetrics:
    """The instruments of one station (implements the station's ``StationMetrics``)."""

    def __init__(self, station: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self._frames = Counter("defectlens_line_frames", "Frames the source delivered", registry=r)
        self._results = Counter(
            "defectlens_line_results", "Results published, by status (dropped: never reached the model)", ["status"],
            registry=r,
        )  # fmt: skip
        self._depth = Gauge("defectlens_line_queue_depth", "Frames waiting for the model", registry=r)
        self._latency = Histogram(
            "defectlens_line_latency_seconds", "Capture (file closed, trigger) to published", buckets=_LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self._sink_errors = Counter("defectlens_line_sink_errors", "Sink failures, by sink", ["sink"], registry=r)
        self._info = Gauge("defectlens_line_station", "The station this process runs", ["station"], registry=r)
        self._info.labels(station=station).set(1)
        for status in ("ok", "needs_review", "error", "dropped"):
            self._results.labels(status=status)
        self._drift_alarm = Gauge("defectlens_line_drift_alarm", "1 while a drift alarm episode is open", registry=r)
        self._drift_alarms = Counter("defectlens_line_drift_alarms", "Drift alarm episodes raised", registry=r)
        self._drift_severity = Gauge(
            "defectlens_line_drift_severity", "Each drift check's value over its alarm level (1: alarm)", ["check"],
            registry=r,
        )  # fmt: skip
        self._drift_filled = Gauge("defectlens_line_drift_window_images", "Frames in the drift window", registry=r)
        self._drift_size = Gauge(
            "defectlens_line_drift_window_size", "Frames a full drift window holds (0: the watch is off)", registry=r
        )
        self._store_errors = Counter(
            "defectlens_line_image_store_errors", "Images the store could not keep (rows logged without them)",
            registry=r,
        )  # fmt: skip
        self._server: Any = None
        self.port: int | None = None

    def frame_in(self) -> None:
        self._frames.inc()

    def result(self, status: str, latency_s: float) -> None:
        self._results.labels(status=status).inc()
        self._latency.observe(max(0.0, latency_s))

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def sink_error(self, sink: str) -> None:
        self._sink_errors.labels(sink=sink).inc()

    def store_error(self) -> None:
        self._store_errors.inc()

    def drift_window(self, size: int) -> None:
        """The drift watch's window size (0: off)."""
        self._drift_size.set(size)

    def drift(self, status: DriftStatus, *, raised: bool = False) -> None:
        """The drift watch's state after a frame (``raised``: that frame opened an alarm episode)."""
        self._drift_alarm.set(1 if status.alarm else 0)
        self._drift_filled.set(status.filled)
        if raised:
            self._drift_alarms.inc()
        for c in status.checks:
            self._drift_severity.labels(check=c.name).set(c.severity)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    def serve(self, port: int, host: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` on ``port`` (0: the system picks one); returns the port bound.

        Raises:
            LineError: when the port cannot be bound.
        """
        from prometheus_client import start_http_server

        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise LineError(f"metrics: cannot listen on {host}:{port} ({exc})") from None
        self.port = int(self._server.server_port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
