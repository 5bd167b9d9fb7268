"""Nothing acknowledged is lost: kill -9 the real server under concurrent load, restart, check the log.

Drives ``python -m defectlens serve`` in a subprocess with concurrent clients, kills it with
SIGKILL mid-run, restarts it on the same log, and checks that every inspection id any client got in
a 200 answer is in the log (with the uploaded image's hash) and that SQLite's integrity check passes.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.require import import_or_missing

httpx = import_or_missing("httpx", flag="SERVE", reason="the durability test drives the server with httpx (dev extra)")


SERVING = re.compile(rb"at (http://127\.0\.0\.1:\d+)/")


def start_server(bundle: Path, db: Path, log_file: Path) -> tuple[subprocess.Popen, str]:
    """The server on a port it picks itself (``--port 0``), and its URL as it reports it once bound: a port
    found free here, closed and handed over could be taken by another process in between."""
    start = log_file.stat().st_size if log_file.exists() else 0
    cmd = [sys.executable, "-m", "defectlens", "serve", "--model", str(bundle), "--port", "0", "--db", str(db)]
    out = log_file.open("ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=out, env={**os.environ, "DEFECTLENS_API_KEY": ""})
    deadline = time.monotonic() + 300  # a loaded CI machine loads the model slowly; readiness only, not timed
    url = None
    while True:
        assert proc.poll() is None, log_file.read_text(errors="replace")
        assert time.monotonic() < deadline, "server never became ready: " + log_file.read_text(errors="replace")
        if url is None:
            found = SERVING.search(log_file.read_bytes()[start:])
            url = found and found.group(1).decode()
        try:
            if url is not None and httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)


def image(i: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def client(url: str, worker: int, acked: dict[int, str], lock: threading.Lock, stop: threading.Event) -> None:
    with httpx.Client(timeout=10) as http:
        n = 0
        while not stop.is_set():
            data = image(worker * 100_000 + n)
            n += 1
            try:
                r = http.post(url + "/v1/predict", files={"files": (f"w{worker}-{n}.png", data, "image/png")})
            except httpx.TransportError:
                return  # the server died under us: this request was never acknowledged
            if r.status_code == 200:
                with lock:
                    acked[r.json()["results"][0]["inspection_id"]] = hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_acknowledged_inspections_survive_kill_9(bundle, tmp_path):
    db, log_file = tmp_path / "log.sqlite", tmp_path / "server.log"
    proc, url = start_server(bundle, db, log_file)
    acked: dict[int, str] = {}
    lock, stop = threading.Lock(), threading.Event()
    threads = [threading.Thread(target=client, args=(url, w, acked, lock, stop)) for w in range(6)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 300  # a bound for a stuck server, not a speed test
        while len(acked) < 40 and time.monotonic() < deadline:  # mid-run: clients are still posting
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        if proc.poll() is None:
            proc.kill()
    assert len(acked) >= 40, log_file.read_text(errors="replace")

    proc, url = start_server(bundle, db, log_file)  # restart on the same log (wherever its port is now)
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            for inspection_id, digest in sorted(acked.items()):
                r = http.get(f"/v1/inspections/{inspection_id}")
                assert r.status_code == 200, inspection_id
                assert r.json()["image_sha256"] == digest and r.json()["status"] == "ok"
            total = http.get("/v1/inspections", params={"limit": 1}).json()["total"]
            assert total >= len(acked)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    from defectlens.inspections import InspectionLog

    with InspectionLog(db) as log:
        assert log.integrity_check() == "ok"
