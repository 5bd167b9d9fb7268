"""``create_app``: the FastAPI application of the inspection service, built from its parts.

No module globals: every app owns its Service (Predictor, log, threads, batchers, metrics
registry), so tests build several side by side. Middleware, outermost first: metrics, the request guard
(bounded headers, a Host of ours, no cross-site writes: :mod:`defectlens.serve.guard`), CORS (only when
origins are configured; off by default), the API key (before any body is read), the upload size limit.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from defectlens.core.errors import DefectlensError
from defectlens.core.version import __version__
from defectlens.inference.predictor import Predictor
from defectlens.inspections import ImageStore, InspectionLog
from defectlens.serve import page, routes_inspections, routes_ops, routes_predict
from defectlens.serve.auth import KeyMiddleware, key_checker
from defectlens.serve.config import ServeConfig
from defectlens.serve.guard import HostPolicy, RequestGuard
from defectlens.serve.limits import BodyLimitMiddleware
from defectlens.serve.metrics import Metrics, MetricsMiddleware
from defectlens.serve.service import Service

_KINDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    422: "invalid_request",
}
_log = logging.getLogger("defectlens.serve")

DESCRIPTION = """Inspect part images with a trained defectlens bundle and keep a durable log of every decision.

Every `/v1` call (and `/metrics`) needs the API key when the service was started with one: send
`X-API-Key: KEY` or `Authorization: Bearer KEY` (here: **Authorize**). `/healthz`, `/readyz` and the
upload page at `/` stay open. Errors are JSON: `{"error": kind, "detail": what to do}`.
"""


def create_app(
    predictor: Predictor,
    log: InspectionLog,
    *,
    config: ServeConfig | None = None,
    store: ImageStore | None = None,
    model_path: str | Path | None = None,
) -> FastAPI:
    """The service's app for ``predictor``, recording into ``log``.

    Args:
        predictor: the model to serve (shared by every request; thread-safe).
        log: the inspection log every decision is written to before it is answered.
        config: limits, API key, batching and threads (defaults: :class:`ServeConfig`).
        store: where to keep uploaded images (None: only their sha256 is logged).
        model_path: the file ``predictor`` was loaded from: SIGHUP loads it again (None: no reload).
    """
    config = config or ServeConfig()
    service = Service(predictor, log, config=config, store=store, model_path=model_path)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    # FastAPIOffline serves the Swagger UI and ReDoc assets from the installed package: /docs works
    # on a line PC with no internet (FastAPI's default loads them from a CDN).
    app = FastAPIOffline(
        title="defectlens inspection service", version=__version__, description=DESCRIPTION, lifespan=lifespan
    )
    app.state.service = service
    check = key_checker(config.api_key)
    app.include_router(page.router())
    app.include_router(routes_predict.router(service, check))
    app.include_router(routes_inspections.router(service, check))
    app.include_router(routes_ops.router(service, check))
    _install_error_handlers(app, service.metrics)
    # add_middleware puts each in front of the ones before: this reads innermost first
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_upload_bytes)
    app.add_middleware(KeyMiddleware, api_key=config.api_key)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    hosts = HostPolicy.for_bind(config.host, config.allowed_hosts)
    app.add_middleware(RequestGuard, hosts=hosts, cors_origins=config.cors_origins)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    return app


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Every error as ``{"error": kind, "detail": ...}``; never a traceback to the client."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _KINDS.get(exc.status_code, "error")
        return JSONResponse({"error": kind, "detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("invalid_request").inc()
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)

    @app.exception_handler(DefectlensError)
    async def refused(_: Request, exc: DefectlensError) -> JSONResponse:
        metrics.errors.labels("invalid_request").inc()
        return JSONResponse({"error": "invalid_request", "detail": str(exc)}, status_code=422)

    @app.exception_handler(sqlite3.Error)
    async def log_unavailable(_: Request, exc: sqlite3.Error) -> JSONResponse:
        # a write is rolled back whole (InspectionLog._transaction): nothing of this request is in the log, and
        # the next one may pass (a lock released, space freed)
        _log.error("inspection log unavailable: %s", exc)
        detail = f"the inspection log is unavailable ({exc}); nothing of this request was recorded: try again"
        return JSONResponse({"error": "log_unavailable", "detail": detail}, status_code=503)

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "internal", "detail": "internal error; see the server log"}, status_code=500)
