"""Decoding uploads: per-file errors with the right status, names kept as data, config checks."""

from __future__ import annotations

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.serve.config import ServeConfig, is_loopback
from defectlens.serve.uploads import MAX_NAME, Upload, classify, client_name, decode
from tests.unit.serve.conftest import BAD, jpeg_bytes, png_bytes


@pytest.mark.parametrize("kind", sorted(BAD))
def test_each_bad_upload_gets_its_status_and_kind(predictor, kind):
    data, status, error_kind = BAD[kind]
    d = decode(Upload(f"{kind}.bin", data), predictor)
    assert d.array is None and d.error is not None
    assert (d.error.status, d.error.kind) == (status, error_kind), d.error.reason


@pytest.mark.parametrize(("data", "fmt"), [(png_bytes(0), "PNG"), (jpeg_bytes(0), "JPEG")])
def test_good_uploads_decode_to_model_input(predictor, data, fmt):
    d = decode(Upload("x", data), predictor)
    assert d.error is None and d.array.shape == (1, 32, 32) and d.image_format == fmt
    assert (d.array == predictor.preprocess(data)).all()  # the Predictor's own preprocessing


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("not an image in an accepted format (JPEG, PNG)", 415),
        ("not an image file (format not recognised)", 415),
        ("format EPS is not accepted (JPEG, PNG)", 415),
        ("unsupported image mode LAB; save it as grayscale or RGB", 415),
        ("image too large (over the 64,000,000 pixel limit)", 422),
        ("cannot decode image (truncated or corrupt): image file is truncated", 422),
        ("empty file (0 bytes)", 422),
        ("something new", 422),
    ],
)
def test_reasons_map_to_415_or_422(reason, status):
    assert classify(reason).status == status


def test_client_names_are_cleaned_labels():
    assert client_name("../a\x00b\r\n.png", 0) == "../ab.png"
    assert client_name(None, 3) == "upload-3" and client_name("  ", 1) == "upload-1"
    assert len(client_name("x" * 1000, 0)) == MAX_NAME


def test_config_checks_and_exposure():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
    assert ServeConfig(host="0.0.0.0").exposed and not ServeConfig(host="0.0.0.0", api_key="k" * 16).exposed
    assert not ServeConfig().exposed and ServeConfig(max_upload_mb=2).max_upload_bytes == 2 * 1024 * 1024
    for bad in ({"max_upload_mb": 0}, {"max_batch": 0}, {"batch_wait_ms": -1}, {"api_key": "short"}):
        with pytest.raises(DefectlensError):
            ServeConfig(**bad)
