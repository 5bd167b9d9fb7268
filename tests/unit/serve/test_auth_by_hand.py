"""The API-key rule and its middleware on hand cases: which credentials pass, which sentence a refusal
carries, which paths are guarded, and the exact 401 the middleware sends before any body is read."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.require import import_or_missing

import_or_missing("fastapi", flag="SERVE", reason="the service needs the [serve] extra")

from fastapi import HTTPException  # noqa: E402

from defectlens.serve.auth import (  # noqa: E402
    MISSING,
    NOT_ACCEPTED,
    KeyMiddleware,
    _header,
    key_checker,
    key_problem,
)

KEY = "s3cret-key-0123"


def test_the_two_sentences_say_missing_and_not_accepted_apart():
    assert MISSING == (
        "API key missing: this service needs one; send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'"
    )
    assert NOT_ACCEPTED == "API key not accepted: it is not the key this service was started with"


@pytest.mark.parametrize(
    ("x_api_key", "authorization", "expected"),
    [
        (KEY, None, None),
        (None, f"Bearer {KEY}", None),
        (None, f"bearer {KEY}", None),  # the scheme in any case
        (None, f"BEARER {KEY}", None),
        (None, f"Bearer   {KEY}  ", None),  # spaces around the token
        (None, None, MISSING),
        ("", None, MISSING),  # an empty header is no key
        (None, "", MISSING),
        (None, "Bearer ", MISSING),
        (None, "Bearer", MISSING),
        (None, f"Basic {KEY}", MISSING),  # another scheme carries no key for us
        (None, f"Bearer{KEY}", MISSING),
        (KEY[:-1], None, NOT_ACCEPTED),  # truncated
        (KEY + "x", None, NOT_ACCEPTED),  # extended
        (KEY.upper(), None, NOT_ACCEPTED),
        ("wrong", f"Bearer {KEY}", NOT_ACCEPTED),  # X-API-Key counts first (a proxy may add its own bearer)
        (KEY, "Bearer wrong", None),
        (None, "Bearer wrong", NOT_ACCEPTED),
    ],
)
def test_key_problem_on_hand_cases(x_api_key, authorization, expected):
    assert key_problem(KEY, x_api_key, authorization) == expected


def test_without_a_configured_key_everything_passes():
    assert key_problem(None, None, None) is None
    assert key_problem(None, "anything", "Bearer x") is None


def test_header_lookup_takes_the_first_and_decodes_latin_1():
    scope = {"headers": [(b"x-api-key", b"first"), (b"x-api-key", b"second"), (b"authorization", b"Bearer \xe9")]}
    assert _header(scope, b"x-api-key") == "first"
    assert _header(scope, b"authorization") == "Bearer é"
    assert _header(scope, b"cookie") is None
    assert _header({}, b"x-api-key") is None


def run_middleware(api_key, path, headers=(), scope_type="http"):
    """Drive KeyMiddleware once; returns (app_called_with, sent messages)."""
    called, sent = [], []

    async def app(scope, receive, send):
        called.append(scope)

    async def receive():
        raise AssertionError("the middleware must not read the body")

    async def send(message):
        sent.append(message)

    scope = {"type": scope_type, "path": path, "headers": list(headers)}
    asyncio.run(KeyMiddleware(app, api_key)(scope, receive, send))
    return called, sent


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/inspections/1", "/metrics", "/metrics/extra"])
def test_protected_paths_without_the_key_get_the_exact_401_before_the_body(path):
    called, sent = run_middleware(KEY, path)
    assert called == []
    body = json.dumps({"error": "unauthorized", "detail": MISSING}).encode()
    assert sent == [
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
                (b"connection", b"close"),
            ],
        },
        {"type": "http.response.body", "body": body},
    ]


def test_a_wrong_key_is_told_apart_from_a_missing_one():
    _, sent = run_middleware(KEY, "/v1/model", [(b"x-api-key", b"nope")])
    assert json.loads(sent[1]["body"]) == {"error": "unauthorized", "detail": NOT_ACCEPTED}


@pytest.mark.parametrize(
    ("api_key", "path", "headers", "scope_type"),
    [
        (KEY, "/v1/predict", [(b"x-api-key", KEY.encode())], "http"),
        (KEY, "/v1/predict", [(b"authorization", f"Bearer {KEY}".encode())], "http"),
        (KEY, "/healthz", [], "http"),  # open paths: health, page, docs
        (KEY, "/", [], "http"),
        (KEY, "/docs", [], "http"),
        (KEY, "/v1", [], "http"),  # not under /v1/
        (KEY, "/v1/predict", [], "lifespan"),  # only HTTP requests carry credentials
        (None, "/v1/predict", [], "http"),  # no key configured
    ],
)
def test_what_passes_reaches_the_app_untouched(api_key, path, headers, scope_type):
    called, sent = run_middleware(api_key, path, headers, scope_type)
    assert sent == [] and len(called) == 1 and called[0]["path"] == path


def test_the_route_dependency_applies_the_same_rule():
    class FakeRequest:
        def __init__(self, headers):
            self.headers = headers

    check = key_checker(KEY)
    assert asyncio.run(check(FakeRequest({"x-api-key": KEY}))) is None
    assert asyncio.run(check(FakeRequest({"authorization": f"Bearer {KEY}"}))) is None
    for headers, detail in (({}, MISSING), ({"x-api-key": "no"}, NOT_ACCEPTED)):
        with pytest.raises(HTTPException) as info:
            asyncio.run(check(FakeRequest(headers)))
        assert (info.value.status_code, info.value.detail, info.value.headers) == (
            401, detail, {"WWW-Authenticate": "Bearer"}
        )  # fmt: skip
    assert asyncio.run(key_checker(None)(FakeRequest({}))) is None
