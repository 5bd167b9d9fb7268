"""The API-key check on its own: only the exact key passes, in either header; empty, truncated,
extended or differently cased keys get 401, and a missing key reads differently from a wrong one."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from defectlens.serve.auth import MISSING, NOT_ACCEPTED, key_checker
from tests.unit.serve.conftest import KEY, png_bytes


def test_the_two_refusals_say_what_to_do():
    assert (
        MISSING == "API key missing: this service needs one; send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'"
    )
    assert NOT_ACCEPTED == "API key not accepted: it is not the key this service was started with"


def refusal(api_key: str | None, headers: dict[str, str]) -> str | None:
    """The 401 detail for ``headers`` (None: the call passes)."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/model",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
    }
    try:
        asyncio.run(key_checker(api_key)(Request(scope)))
    except HTTPException as exc:
        assert exc.status_code == 401 and exc.headers == {"WWW-Authenticate": "Bearer"}
        return str(exc.detail)
    return None


def allowed(api_key: str | None, headers: dict[str, str]) -> bool:
    return refusal(api_key, headers) is None


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
@pytest.mark.parametrize(
    "sent",
    [
        "",  # an empty header
        KEY[:-1],  # truncated by one character
        KEY[:1],
        KEY + "x",  # extended by one character
        KEY + KEY,
        KEY.upper(),
        " " + KEY[1:],
        KEY[:-1] + chr(ord(KEY[-1]) + 1),  # the last character changed
    ],
)
def test_only_the_exact_key_passes(header, sent):
    value = f"Bearer {sent}" if header == "Authorization" else sent
    assert refusal(KEY, {header: value}) == (MISSING if not sent.strip() else NOT_ACCEPTED)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": KEY},
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer {KEY}"},  # the scheme is case-insensitive (RFC 7235)
        {"Authorization": f"Bearer   {KEY}  "},
    ],
)
def test_the_exact_key_passes_in_either_header(headers):
    assert allowed(KEY, headers)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": KEY},  # no scheme
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"X-Api-Key-Extra": KEY},
    ],
)
def test_missing_or_malformed_credentials_are_refused(headers):
    assert refusal(KEY, headers) == MISSING


def test_without_a_configured_key_everything_passes():
    assert allowed(None, {}) and allowed(None, {"X-API-Key": ""})


def test_an_empty_key_header_is_refused_by_the_service(make_client):
    with make_client(api_key=KEY) as (c, log):
        files = [("files", ("a.png", png_bytes(0), "image/png"))]
        sent = [({}, MISSING), ({"X-API-Key": ""}, MISSING), ({"X-API-Key": KEY[:-1]}, NOT_ACCEPTED)]
        for headers, detail in [*sent, ({"Authorization": f"Bearer {KEY}0"}, NOT_ACCEPTED)]:
            r = c.post("/v1/predict", files=files, headers=headers)
            assert r.status_code == 401, headers
            assert r.json() == {"error": "unauthorized", "detail": detail}  # the client is told what to send
        assert log.count() == 0  # nothing refused was decided or logged


def test_a_valid_key_header_is_not_overruled_by_a_wrong_bearer_token():
    # a proxy may add its own Authorization header: the X-API-Key the client sent still counts
    assert allowed(KEY, {"X-API-Key": KEY, "Authorization": "Bearer not-the-key"})
