"""Fixtures for the web service tests: a served tiny bundle, a client factory and bad uploads."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from tests.require import import_or_missing

import_or_missing("fastapi", flag="SERVE", reason="the web service needs the [serve] extra")

KEY = "test-key-0123456789"
#: The test client's address: a Host the service answers to by default (bound to loopback).
BASE = "http://127.0.0.1:8000"


def png_bytes(seed: int = 0, size: tuple[int, int] = (40, 30), mode: str = "L") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def bomb_png(side: int = 20000) -> bytes:
    """A valid PNG header declaring side x side pixels (400 Mpx) with almost no data: the bomb guard's case."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def lab_tiff() -> bytes:
    """A well-formed TIFF in CIE L*a*b*: an image, but a pixel mode the model input cannot be made from."""
    buf = io.BytesIO()
    Image.new("LAB", (16, 16)).save(buf, "TIFF")
    return buf.getvalue()


BAD = {
    "text": (b"this is not an image", 415, "not_an_image"),
    "truncated": (jpeg_bytes(1)[:300], 422, "corrupt_image"),
    "bomb": (bomb_png(), 422, "image_too_large"),
    "lab": (lab_tiff(), 415, "unsupported_image"),
    "empty": (b"", 422, "empty_file"),
}


@pytest.fixture(scope="session")
def predictor(bundle):
    from defectlens.inference.predictor import Predictor

    return Predictor.load(bundle, threads=1)


def wait_ready(client, timeout: float = 30.0) -> None:
    """Block until ``/readyz`` says the warm-up ran (not a timing assertion: it only waits)."""
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the service never became ready"
        time.sleep(0.02)


@pytest.fixture
def make_client(predictor, tmp_path):
    """``make_client(**config)`` -> (TestClient, InspectionLog) of a fresh app (lifespan running)."""
    from fastapi.testclient import TestClient

    from defectlens.inspections import ImageStore, InspectionLog
    from defectlens.serve import ServeConfig, create_app

    opened = []

    @contextmanager
    def make(store: bool = False, pred=None, **config) -> Iterator[tuple[TestClient, InspectionLog]]:
        log = InspectionLog(tmp_path / f"log{len(opened)}.sqlite")
        opened.append(log)
        image_store = ImageStore(tmp_path / "images") if store else None
        app = create_app(pred or predictor, log, config=ServeConfig(worker_threads=2, **config), store=image_store)
        with TestClient(app, base_url=BASE) as client:
            wait_ready(client)
            yield client, log

    yield make
    for log in opened:
        log.close()


@pytest.fixture
def client(make_client):
    with make_client() as (c, log):
        c.log = log
        yield c
