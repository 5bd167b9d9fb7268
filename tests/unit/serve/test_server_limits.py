"""The real server (``defectlens serve --port 0``) under a hostile client, on raw sockets.

An unauthenticated upload is answered 401 while the client has sent only part of its body (the key is
checked before the body is read); a 32 MB header is refused while it is still being sent; 2,000 headers
are refused; a foreign Host and a cross-site write are refused. Each answer is read from the socket.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.serve.conftest import KEY

pytestmark = pytest.mark.slow  # a real server process, started once for the module

SERVING = re.compile(r"at http://127\.0\.0\.1:(\d+)/")
MB = 1024 * 1024


@pytest.fixture(scope="module")
def port(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The server with an API key, on the port it bound itself (read back from its output)."""
    tmp = tmp_path_factory.mktemp("server")
    out = (tmp / "server.log").open("wb")
    cmd = [sys.executable, "-m", "defectlens", "serve", "--model", str(bundle), "--port", "0", "--db", str(tmp / "l")]
    proc = subprocess.Popen(cmd, stdout=out, stderr=out, env={**os.environ, "DEFECTLENS_API_KEY": KEY})
    deadline = time.monotonic() + 300  # waits for startup on a loaded machine; not a timing assertion
    found = None
    while found is None:
        assert proc.poll() is None and time.monotonic() < deadline, (tmp / "server.log").read_text()
        found = SERVING.search((tmp / "server.log").read_text(errors="replace"))
        time.sleep(0.05)
    yield int(found.group(1))
    proc.terminate()
    proc.wait(timeout=60)
    out.close()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(120)  # a hang guard only: every answer below comes without waiting on a timeout
    return sock


def response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of the one response on ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(body)


def upload_head(port: int, length: int, extra: str = "") -> bytes:
    return (
        f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def send_until_answered(sock: socket.socket, head: bytes, piece: bytes, total: int) -> int:
    """Send ``head`` then ``piece`` repeatedly up to ``total`` bytes, stopping as soon as an answer is readable
    (or the server closed); returns the bytes sent."""
    sock.sendall(head)
    sent = len(head)
    while sent < total:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(piece)
    return sent


@pytest.mark.parametrize(
    ("credentials", "detail"),
    [("", "API key missing"), (f"X-API-Key: {KEY[:-1]}\r\n", "API key not accepted"),
     ("Authorization: Bearer wrong-key-000\r\n", "API key not accepted")],
)  # fmt: skip
def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(port, credentials, detail):
    with connect(port) as sock:
        body = 15 * MB  # under the 20 MB upload limit: only the key can refuse it
        sock.sendall(upload_head(port, body, credentials) + b"--b\r\n" + b"x" * 65536)  # 64 KiB of 15 MB
        status, headers, answer = response(sock)
    assert status == 401 and answer["error"] == "unauthorized" and answer["detail"].startswith(detail)
    assert headers["www-authenticate"] == "Bearer" and headers["connection"] == "close"


def test_an_upload_with_the_key_is_read_and_answered(port):
    with connect(port) as sock:
        sock.sendall(upload_head(port, 4, f"X-API-Key: {KEY}\r\n") + b"--b-")
        status, _, answer = response(sock)
    assert status == 422 and answer["error"] == "invalid_request"  # read and parsed: no files in it


def test_a_32_mb_header_is_refused_while_it_is_sent(port):
    with connect(port) as sock:
        head = f"GET /v1/model HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {KEY}\r\nX-Big: ".encode()
        sent = send_until_answered(sock, head, b"a" * 65536, 32 * MB)
        status, headers, answer = response(sock)
    assert status == 431 and answer["error"] == "headers_too_large" and headers["connection"] == "close"
    assert sent < 32 * MB  # refused before the client had sent it all


@pytest.mark.parametrize("count", [101, 2000])
def test_thousands_of_headers_are_refused(port, count):
    with connect(port) as sock:
        many = "".join(f"X-H{i}: v\r\n" for i in range(count))
        sock.sendall(f"GET /v1/model HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {KEY}\r\n{many}\r\n".encode())
        status, _, answer = response(sock)
    assert status == 431 and "at most 100" in answer["detail"]


@pytest.mark.parametrize(
    ("extra", "status", "error"),
    [
        ("Host: evil.example\r\n", 421, "host_not_allowed"),
        ("Host: 127.0.0.1\r\nOrigin: https://evil.example\r\n", 403, "cross_origin"),
        ("Host: 127.0.0.1\r\nSec-Fetch-Site: cross-site\r\n", 403, "cross_origin"),
    ],
)
def test_a_rebinding_or_cross_site_page_is_refused(port, extra, status, error):
    with connect(port) as sock:
        sock.sendall(f"POST /v1/predict HTTP/1.1\r\n{extra}X-API-Key: {KEY}\r\nContent-Length: {MB}\r\n\r\n".encode())
        got, _, answer = response(sock)
    assert (got, answer["error"]) == (status, error)
