"""API-key check for the ``/v1`` routes and ``/metrics``, made before a request's body is read.

With a key configured, a call must carry it as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``
(compared in constant time); otherwise it gets 401, saying whether the key was missing or not accepted.
:class:`KeyMiddleware` refuses in front of everything that reads the body (the upload parsing, the size
limit), so an unauthenticated client cannot make the service read a 20 MB upload; :func:`key_checker` is
the same check as a route dependency, which also declares both schemes in the OpenAPI schema, so the
Swagger page at ``/docs`` can take the key (Authorize).

``/healthz``, ``/readyz``, the upload page, its static files and ``/docs`` stay open: they carry no data
(the page asks for the key and sends it with each call). ``/metrics`` needs the key, since it reveals
production volumes and the defect mix; Prometheus sends it with ``authorization: {credentials: KEY}``.

Changing the served model (``POST /v1/model``, ``POST /v1/model/rollback``) needs the key even where the rest is
open: a service started without one refuses it (403, :data:`NO_KEY`), so a model can be swapped over HTTP only by
someone holding a key the operator chose.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from defectlens.serve.limits import send_error

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

HOW = "send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'"
#: The 401 details: a call without a key reads differently from one with a wrong key.
MISSING = f"API key missing: this service needs one; {HOW}"
NOT_ACCEPTED = "API key not accepted: it is not the key this service was started with"
#: The 403 detail of a model change asked of a service started without a key.
NO_KEY = (
    "changing the model needs an API key, and this service was started without one: restart it with "
    "--api-key KEY (or env DEFECTLENS_API_KEY), or send the process SIGHUP to reload the model file it started with"
)
#: Paths that need the key (everything else is the page, its assets, the docs and the health checks).
PROTECTED = ("/v1/", "/metrics")

# Declared for the OpenAPI schema (Swagger's Authorize); the check itself is key_problem.
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the service's API key")
BEARER = HTTPBearer(auto_error=False, description="the service's API key as a bearer token")


def key_problem(api_key: str | None, x_api_key: str | None, authorization: str | None) -> str | None:
    """Why a request's credentials are refused (:data:`MISSING` or :data:`NOT_ACCEPTED`); None when it may pass.

    Args:
        api_key: the configured key (None: no key needed).
        x_api_key: the ``X-API-Key`` header, if sent; it counts before a bearer token (a proxy may add its own).
        authorization: the ``Authorization`` header, if sent (scheme ``Bearer``, any case).
    """
    if api_key is None:
        return None
    given = x_api_key
    auth = authorization or ""
    if given is None and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
        return NOT_ACCEPTED if given else MISSING  # an empty header is no key
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class KeyMiddleware:
    """Answer 401 to a protected path without the key before the app reads a byte of the body."""

    def __init__(self, app: ASGIApp, api_key: str | None):
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api_key is not None and scope["type"] == "http" and str(scope["path"]).startswith(PROTECTED):
            problem = key_problem(self.api_key, _header(scope, b"x-api-key"), _header(scope, b"authorization"))
            if problem is not None:
                # the body was not read: close the connection rather than leave it for the next request
                await send_error(
                    send,
                    401,
                    error="unauthorized",
                    detail=problem,
                    headers=[(b"www-authenticate", b"Bearer")],
                    close=True,
                )
                return
        await self.app(scope, receive, send)


def key_checker(api_key: str | None, *, required: bool = False) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency that raises 401 unless the request carries ``api_key`` (no-op without a key).

    With ``required`` (changing the model), a service without a key refuses every call (403, :data:`NO_KEY`).

    A coroutine, though nothing in it waits: FastAPI runs a plain function dependency on a worker
    thread, a thread hop per request for a header comparison.
    """

    async def check(
        request: Request,
        _key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> None:
        if required and api_key is None:
            raise HTTPException(status_code=403, detail=NO_KEY)
        problem = key_problem(api_key, request.headers.get("x-api-key"), request.headers.get("authorization"))
        if problem is not None:
            raise HTTPException(status_code=401, detail=problem, headers={"WWW-Authenticate": "Bearer"})

    return check
