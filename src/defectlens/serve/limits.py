"""The upload size limit, enforced before a body is read whole.

An ASGI middleware: a request whose ``Content-Length`` is over the limit is answered 413 without
reading a byte of its body; a body sent without a length (chunked) is counted as it streams and
refused as soon as it passes the limit. Whatever the app was doing with the partial body, the
client gets one JSON 413.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


class UploadTooLarge(Exception):
    """Raised from ``receive`` once a streamed body passes the limit (aborts multipart parsing)."""


async def send_error(
    send: Send,
    status: int,
    *,
    error: str,
    detail: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
    close: bool = False,
) -> None:
    """Send one JSON error response, ``{"error": error, "detail": detail}``, from an ASGI middleware.

    Args:
        close: ask the client to close the connection (the request's body was not read).
    """
    body = json.dumps({"error": error, "detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def send_too_large(send: Send, limit: int) -> None:
    """Send the JSON 413 response."""
    mb = limit / (1024 * 1024)
    detail = f"request body over the {mb:g} MB limit; send fewer or smaller files"
    await send_error(send, 413, error="upload_too_large", detail=detail, close=True)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 (by header first, then by counting)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_too_large(send, self.max_bytes)
            return
        state = {"seen": 0, "over": False, "started": False}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.max_bytes:
                    state["over"] = True
                    raise UploadTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if state["over"]:  # the app answered the aborted parse (e.g. 400): replace it once with 413
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await send_too_large(send, self.max_bytes)
                return
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except UploadTooLarge:
            if not state["started"]:
                await send_too_large(send, self.max_bytes)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
