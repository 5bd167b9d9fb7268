"""API-key check for the ``/v1`` routes and ``/metrics``.

With a key configured, a call must carry it as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``
(compared in constant time); otherwise it gets 401. ``/healthz``, ``/readyz``, the upload page and
its static files stay open: they carry no data (the page asks for the key and sends it with each
call). ``/metrics`` needs the key, since it reveals production volumes and the defect mix;
Prometheus sends it with ``authorization: {credentials: KEY}`` in its scrape config.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request


def key_checker(api_key: str | None) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that raises 401 unless the request carries ``api_key`` (no-op without a key).

    A coroutine, though nothing in it waits: FastAPI runs a plain function dependency on a worker
    thread, a thread hop per request for a header comparison.
    """

    async def check(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong API key: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
