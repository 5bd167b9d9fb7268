"""The web service's settings (:class:`ServeConfig`) and the checks made on them before it starts."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.core.profile import GateMode, check_gate_mode
from defectlens.inference.backends import SLICE, resolve_threads
from defectlens.inference.drift import DriftConfig
from defectlens.inspections.engine import DatabaseURL

#: Environment variable read for the API key when none is given on the command line.
API_KEY_ENV = "DEFECTLENS_API_KEY"
#: Environment variable read for more Host names the service answers to (comma-separated), beside --allowed-host.
ALLOWED_HOSTS_ENV = "DEFECTLENS_ALLOWED_HOSTS"
#: The drift watch's settings ``serve`` takes: DriftConfig's field -> its option (as ``monitor`` names them).
DRIFT_OPTIONS = {"window": "--drift-window", "psi_alarm": "--drift-psi-alarm", "share_alpha": "--drift-share-alpha"}


@dataclass(frozen=True)
class ServeConfig:
    """How the service runs; every field has the command line's default.

    Attributes:
        host: interface to bind (loopback unless the operator chooses otherwise).
        port: TCP port.
        db: the inspection log: a SQLite file or a PostgreSQL database.
        api_key: when set, every ``/v1`` call and ``/metrics`` need it.
        store_images: folder for content-addressed copies of uploads (None: keep only the hash).
        max_upload_mb: largest request body accepted (413 above it).
        worker_threads: threads that decode uploads and write the log (None: up to 4, one per core).
        inference_threads: CPU cores the model runs on: that many model calls (batches) run at once,
            one core each (None: every usable core).
        precision: the bundle graph to serve (``auto``: its default; ``fp32``; ``int8`` when exported with it).
        gate: how frames the model cannot judge are answered: ``refuse`` (no class: ``needs_review``),
            ``warn`` (the class, with the gate's flag) or ``off``.
        batching: gather concurrent requests into one model call (off: one call per request).
        max_batch: most images in one model call (default :data:`~defectlens.inference.backends.SLICE`:
            a call's activations stay in its core's cache).
        batch_wait_ms: longest a first image waits for others while more are still being decoded.
        cors_origins: origins allowed to call the API from a browser (empty: CORS off); also the only
            other origins whose pages may POST to it.
        allowed_hosts: ``Host`` names the service answers to beside loopback names and the bind host
            (``*``: any, when a proxy in front checks it); others get 421 (DNS rebinding).
        drift: the drift watch's settings (see :func:`drift_config`).
        drift_watch: False turns the drift watch off (``--no-drift``).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    db: Path | DatabaseURL = Path("inspections.sqlite")
    api_key: str | None = None
    store_images: Path | None = None
    max_upload_mb: float = 20.0
    worker_threads: int | None = None
    inference_threads: int | None = None
    precision: str = "auto"
    gate: GateMode = "refuse"
    batching: bool = True
    max_batch: int = SLICE
    batch_wait_ms: float = 5.0
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    drift: DriftConfig = field(default_factory=DriftConfig)
    drift_watch: bool = True

    def __post_init__(self) -> None:
        check_gate_mode(self.gate)
        if not 0 < self.max_upload_mb <= 1024:
            raise DefectlensError(f"--max-upload-mb must be in (0, 1024], got {self.max_upload_mb}")
        if self.max_batch < 1:
            raise DefectlensError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.batch_wait_ms < 0:
            raise DefectlensError(f"--batch-wait-ms must be >= 0, got {self.batch_wait_ms}")
        if self.inference_threads is not None and self.inference_threads < 1:
            raise DefectlensError(f"--threads must be at least 1, got {self.inference_threads}")
        if self.worker_threads is not None and self.worker_threads < 1:
            raise DefectlensError(f"--workers-threads must be at least 1, got {self.worker_threads}")
        if self.api_key is not None and len(self.api_key) < 8:
            raise DefectlensError("the API key must be at least 8 characters; use a long random string")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def threads(self) -> int:
        """Worker threads actually used (decoding, Grad-CAM and the log)."""
        return self.worker_threads or max(2, min(4, os.cpu_count() or 1))

    @property
    def model_calls(self) -> int:
        """Model calls that run at once, one core each (``inference_threads``, or every usable core)."""
        return resolve_threads(self.inference_threads)

    @property
    def exposed(self) -> bool:
        """True when bound beyond this machine with no API key (the command line warns)."""
        return not is_loopback(self.host) and not self.api_key


def drift_config(given: Mapping[str, Any]) -> DriftConfig:
    """The drift watch's settings from ``--drift-window``, ``--drift-psi-alarm`` and ``--drift-share-alpha``
    (``given``: DriftConfig's field -> value, None where not given). A window shorter than the default
    ``min_verdicts`` checks agreement from as many verdicts as it holds.

    Raises:
        DefectlensError: naming the option and its value, with DriftConfig's reason.
    """
    chosen = {k: v for k, v in given.items() if v is not None}
    for key, value in chosen.items():
        try:
            _drift({key: value})
        except DefectlensError as exc:
            raise DefectlensError(f"{DRIFT_OPTIONS.get(key, key)} {value}: {exc}") from None
    return _drift(chosen)


def _drift(settings: dict[str, Any]) -> DriftConfig:
    window = settings.get("window")
    if window is not None and "min_verdicts" not in settings:
        settings = {**settings, "min_verdicts": max(1, min(DriftConfig.min_verdicts, int(window)))}
    return DriftConfig(**settings)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
