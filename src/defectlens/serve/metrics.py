"""Prometheus metrics of one app (its own ``CollectorRegistry``, so two apps in a process never mix).

Exposed at ``GET /metrics``: requests by route, method and status; errors by kind; request latency;
the model batch size (the micro-batcher's effect); log commit group size; decisions per class; frames the
gate flagged, apart (``needs_review``: no class given, never among the decisions; ``warned``: decided with
the flag, ``--gate warn``); the drift watch's alarm, checks and window (:mod:`defectlens.serve.drift`); model
changes while serving, by action and outcome (a refused bundle counts as ``failed``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from defectlens.serve.drift import ServiceDrift

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from defectlens.inference.drift import DriftConfig

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)


class Metrics:
    """The service's instruments, in a private registry."""

    def __init__(self, *, drift: DriftConfig | None = None, watch_drift: bool = True) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "defectlens_requests", "HTTP requests served", ["route", "method", "status"], registry=r
        )
        self.errors = Counter("defectlens_errors", "Errors by kind (per file or per request)", ["kind"], registry=r)
        self.latency = Histogram(
            "defectlens_request_latency_seconds", "Request latency", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "defectlens_batch_size", "Images per model call", buckets=_BATCH_BUCKETS, registry=r
        )
        self.commit_size = Histogram(
            "defectlens_log_commit_rows", "Inspection rows per log commit", buckets=_BATCH_BUCKETS, registry=r
        )
        self.predictions = Counter("defectlens_predictions", "Decisions per class", ["label"], registry=r)
        self.gate_flags = Counter(
            "defectlens_gate_flagged",
            "Frames the gate flagged: needs_review (no class given) or warned (decided with the flag)",
            ["outcome"],
            registry=r,
        )
        self.ready = Gauge("defectlens_ready", "1 once the model is loaded and warmed up", registry=r)
        self.drift = ServiceDrift(r, drift, enabled=watch_drift)  # its gauges (see defectlens.serve.drift)
        self.model_swaps = Counter(
            "defectlens_model_swaps",
            "Model changes while serving: action load, reload (SIGHUP) or rollback; outcome ok or failed",
            ["action", "outcome"],
            registry=r,
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.drift.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


#: Requests refused before a route (or by the log) counted as errors of their own kind.
_REFUSALS = {
    401: "unauthorized",
    403: "cross_origin",
    413: "upload_too_large",
    421: "host_not_allowed",
    431: "headers_too_large",
    503: "log_unavailable",
}


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request and timing it, labelled by route template (never
    by raw path, so ids and probing clients cannot blow up the label count)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            if status == 403 and route.startswith("/v1/model"):  # a model change without a configured key
                self.metrics.errors.labels("forbidden").inc()
            elif status in _REFUSALS or status >= 500:
                self.metrics.errors.labels(_REFUSALS.get(status, "internal")).inc()
