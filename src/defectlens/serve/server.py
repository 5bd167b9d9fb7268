"""Running the service: load the model and the log, bind the port, serve the app with uvicorn."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from defectlens.core.errors import DefectlensError
from defectlens.inference.predictor import Predictor
from defectlens.inspections import ImageStore, InspectionLog
from defectlens.serve.config import ServeConfig
from defectlens.serve.guard import MAX_HEADER_BYTES


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (port 0: any free port).

    Raises:
        DefectlensError: when the address cannot be bound (port in use, unknown host).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise DefectlensError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host"
        ) from None
    return sock


def serve(model: str | Path, config: ServeConfig, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``model`` (a ``.dlens`` bundle, run folder or checkpoint) until interrupted.

    Args:
        model: what to serve.
        config: host, port, log, limits and batching.
        on_ready: called with the service's URL once the model, the log and the port are open.

    Raises:
        DefectlensError: for a model or log that cannot be opened, or a port that cannot be bound.
    """
    import uvicorn

    from defectlens.serve.app import create_app

    # One core per model call: the service runs config.model_calls calls at once (see serve.batcher),
    # and concurrent requests already fill the cores, so a lone image is never split over them either.
    predictor = Predictor.load(model, threads=1, precision=config.precision, gate=config.gate)
    store = ImageStore(config.store_images) if config.store_images is not None else None
    with InspectionLog(config.db) as log:
        sock = bind(config.host, config.port)
        app = create_app(predictor, log, config=config, store=store, model_path=model)
        # What exists now (the app, the runtime, the model) lives as long as the process: keep it out of
        # the garbage collector's full passes, which otherwise walk all of it and hold every request in
        # flight for tens of milliseconds under load (the standard gc.freeze() for long-running servers).
        gc.collect()
        gc.freeze()
        if on_ready is not None:
            host = f"[{config.host}]" if ":" in config.host else config.host
            on_ready(f"http://{host}:{sock.getsockname()[1]}/")
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=10,
                http=_http_protocol(),
                h11_max_incomplete_event_size=MAX_HEADER_BYTES,  # the same bound where h11 parses
            )
        )
        server.run(sockets=[sock])


def _http_protocol() -> type[asyncio.Protocol] | Literal["h11"]:
    """uvicorn's httptools protocol with the request-head bound, or h11 where httptools is not installed."""
    try:
        from defectlens.serve.protocol import BoundedHttpTools
    except ImportError:
        return "h11"
    return BoundedHttpTools
