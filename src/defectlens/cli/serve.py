"""``defectlens serve``: the inspection web service (upload page, REST API, inspection log).

A container configures it by environment variables (the Dockerfile's ``ENV``): ``DEFECTLENS_MODEL``,
``DEFECTLENS_DB`` and ``DEFECTLENS_PORT`` stand for ``--model``, ``--db`` and ``--port`` when those are not
given, beside ``DEFECTLENS_API_KEY`` and ``DEFECTLENS_ALLOWED_HOSTS``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from defectlens.core.errors import DefectlensError
from defectlens.core.profile import GATE_MODES
from defectlens.inference.backends import SLICE
from defectlens.inference.predictor import PRECISIONS

#: Environment variables read when the flag is not given (a container's configuration).
MODEL_ENV, DB_ENV, PORT_ENV = "DEFECTLENS_MODEL", "DEFECTLENS_DB", "DEFECTLENS_PORT"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="serve a model bundle over HTTP with an upload page", description=__doc__)
    p.add_argument(
        "--model", default=None, help=f"model bundle (.dlens), run folder or checkpoint to serve (or env {MODEL_ENV})"
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind; anything but loopback needs --api-key")
    p.add_argument("--port", type=int, default=None, help=f"TCP port (or env {PORT_ENV}; default 8000)")
    p.add_argument(
        "--db",
        default=None,
        help=f"inspection log: a SQLite file (or sqlite:///PATH) or postgresql://USER:PASSWORD@HOST:PORT/DB "
        f"(the [postgres] extra); or env {DB_ENV}; default inspections.sqlite",
    )
    p.add_argument("--api-key", default=None, help="require this key on /v1 and /metrics (or env DEFECTLENS_API_KEY)")
    p.add_argument("--store-images", type=Path, default=None, metavar="DIR", help="keep uploads, by content hash")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body (413 above)")
    p.add_argument("--workers-threads", type=int, default=None, metavar="N", help="decoding/log threads")
    p.add_argument("--threads", type=int, default=None, help="CPU cores for the model, one call each (default: all)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="bundle graph: auto, fp32 or int8")
    p.add_argument(
        "--gate",
        choices=GATE_MODES,
        default="refuse",
        help="a frame the model cannot judge: refuse (no class: needs_review), warn (class and flag) or off",
    )
    p.add_argument("--max-batch", type=int, default=SLICE, help="most images per model call")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill")
    p.add_argument("--no-batching", action="store_true", help="one model call per image (for comparison)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow this browser origin")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="answer to this Host name too (beside loopback and the bind host; or env DEFECTLENS_ALLOWED_HOSTS)",
    )
    d = p.add_argument_group(
        "drift watch", "when the last window of frames no longer looks like the bundle's reference"
    )
    d.add_argument("--drift-window", type=int, metavar="N", help="frames per window (default: the watch's, 100)")
    d.add_argument("--drift-psi-alarm", type=float, metavar="PSI", help="PSI at which a statistic alarms (default 1.0)")
    d.add_argument("--drift-share-alpha", type=float, metavar="P", help="p-value under which a decision share alarms")
    d.add_argument("--no-drift", action="store_true", help="turn the drift watch off")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli.output import stderr, warn
    from defectlens.inspections.engine import parse_location
    from defectlens.serve import ALLOWED_HOSTS_ENV, API_KEY_ENV, ServeConfig
    from defectlens.serve.config import drift_config
    from defectlens.serve.server import serve

    model = args.model or os.environ.get(MODEL_ENV)
    if not model:
        raise DefectlensError(
            f"serve needs a model: --model BUNDLE or env {MODEL_ENV} (a .dlens file from 'defectlens export RUN')"
        )
    db = parse_location(args.db or os.environ.get(DB_ENV) or "inspections.sqlite")  # a URL prints masked
    drift = {"window": args.drift_window, "psi_alarm": args.drift_psi_alarm, "share_alpha": args.drift_share_alpha}
    config = ServeConfig(
        host=args.host,
        port=_port(args.port),
        db=db,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        store_images=args.store_images,
        max_upload_mb=args.max_upload_mb,
        worker_threads=args.workers_threads,
        inference_threads=args.threads,
        precision=args.precision,
        gate=args.gate,
        batching=not args.no_batching,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        cors_origins=tuple(args.cors_origin),
        allowed_hosts=(
            *args.allowed_host,
            *(h.strip() for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()),
        ),
        drift=drift_config(drift),
        drift_watch=not args.no_drift,
    )
    if config.exposed:
        warn(f"listening on {config.host} without an API key: anyone who can reach it can use it and read the log")
    serve(model, config, on_ready=lambda url: stderr().print(f"serving {model} at {url} (log: {db})"))
    return 0


def _port(flag: int | None) -> int:
    """--port, else env DEFECTLENS_PORT, else 8000; a bad value in the environment is refused with its name."""
    if flag is not None:
        return flag
    text = os.environ.get(PORT_ENV, "").strip()
    if not text:
        return 8000
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise DefectlensError(f"env {PORT_ENV}={text!r} is not a TCP port: give a whole number from 0 to 65535")
    return int(text)
