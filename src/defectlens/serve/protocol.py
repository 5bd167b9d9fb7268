"""uvicorn's httptools protocol with a bound on a request's head (request line and headers).

httptools keeps a header value until it is whole, and uvicorn sets no limit: a client could make the
service hold a 32 MB header. :class:`BoundedHttpTools` counts the bytes received while a request's head
is still incomplete and answers 431 (then closes) once they pass
:data:`~defectlens.serve.guard.MAX_HEADER_BYTES`, before the rest arrives. The number of headers, and the
size of a head that did complete, are checked again by :class:`~defectlens.serve.guard.RequestGuard`,
which works under any server. Without httptools, uvicorn's h11 parser is given the same bound
(``h11_max_incomplete_event_size``).

Only uvicorn's protocol callbacks are overridden (``data_received`` and the parser's message events),
each calling the original.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from defectlens.serve.guard import MAX_HEADER_BYTES


def _431() -> bytes:
    body = json.dumps(
        {
            "error": "headers_too_large",
            "detail": f"request line and headers over {MAX_HEADER_BYTES // 1024} KiB; send fewer or shorter headers",
        }
    ).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class BoundedHttpTools(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that refuses a request head over ``MAX_HEADER_BYTES`` while it arrives."""

    max_head = MAX_HEADER_BYTES

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._in_head = False  # between a message's start and its headers' end
        self._head_bytes = 0
        self._completed = 0  # messages completed on this connection

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._completed += 1
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        completed = self._completed
        super().data_received(data)
        # bytes fed while a head is incomplete, and no message ended within them, all belong to that head
        if self._in_head and self._completed == completed and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head:
                self._in_head = False
                if self.cycle is None or self.cycle.response_complete:  # no answer of an earlier request under way
                    self.transport.write(_431())
                self.transport.close()
