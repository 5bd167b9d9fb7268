"""Skips that CI may not take: each missing piece names a ``DEFECTLENS_REQUIRE_<FLAG>`` variable, and
with it set to 1 (``.ci/run`` sets them all) the test fails instead of skipping.

A test calls these before any other skip (a fixture that skips first hides the check), so a broken
install or a missing ``../shared`` cannot turn part of the suite into silent skips in CI.

Flags:
    UI_TESTS: Chromium, Playwright, Xvfb and Tk (``make sysdeps``, the ``dev`` extra).
    PEERS: the benchmark peers' virtualenvs (``make peers``: Ultralytics, and anomalib's ``.venv-anomalib``).
    REALDATA: ``../shared/datasets`` beside the checkout.
    SERVE: the ``serve`` extra (FastAPI, uvicorn) and httpx, for the web service tests.
    EXTRAS: the other extras ``make install`` installs (``train``: elpv-dataset, grad-cam; ``openvino``; ``ray``).
    LINE: ``defectlens line``'s extras (``line``, ``video``, ``camera``: watchdog, paho-mqtt, asyncua, pymodbus,
        OpenCV, harvesters + genicam's simulated camera) and the Mosquitto broker (``make sysdeps``).
    POSTGRES: the ``postgres`` extra (SQLAlchemy, psycopg, alembic) and PostgreSQL's ``initdb``/``pg_ctl``
        (``make sysdeps``), for the inspection log's tests on PostgreSQL.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

FLAGS = ("UI_TESTS", "PEERS", "REALDATA", "SERVE", "EXTRAS", "LINE", "POSTGRES")


def required(flag: str) -> bool:
    """Whether ``DEFECTLENS_REQUIRE_<flag>=1`` is set."""
    assert flag in FLAGS, f"unknown flag {flag!r}: one of {FLAGS}"
    return os.environ.get(f"DEFECTLENS_REQUIRE_{flag}") == "1"


def missing(flag: str, reason: str) -> NoReturn:
    """Skip with ``reason``, or fail when the flag is set; usable at module level (a conftest)."""
    if required(flag):
        pytest.fail(f"{reason} (DEFECTLENS_REQUIRE_{flag}=1: CI must run this test)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def import_or_missing(module: str, *, flag: str, reason: str) -> ModuleType:
    """``import module``, or :func:`missing` with ``reason`` and the import error."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing(flag, f"{reason} ({exc})")
