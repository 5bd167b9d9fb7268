"""Nothing acknowledged is lost: kill -9 the real server under concurrent load, restart, check the log.

Drives ``python -m defectlens serve`` in a subprocess with concurrent clients, kills it with
SIGKILL mid-run, restarts it on the same log, and checks that every inspection id any client got in
a 200 answer is in the log (with the uploaded image's hash) and that SQLite's integrity check passes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, db: Path, port: int, log_file: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "defectlens", "serve", "--model", str(bundle), "--port", str(port), "--db", str(db)]
    out = log_file.open("ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=out, env={**os.environ, "DEFECTLENS_API_KEY": ""})
    deadline = time.monotonic() + 60
    while True:  # waits for readiness; not a timing assertion
        assert proc.poll() is None, log_file.read_text(errors="replace")
        assert time.monotonic() < deadline, "server never became ready"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
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
    db, port, log_file = tmp_path / "log.sqlite", free_port(), tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}"
    proc = start_server(bundle, db, port, log_file)
    acked: dict[int, str] = {}
    lock, stop = threading.Lock(), threading.Event()
    threads = [threading.Thread(target=client, args=(url, w, acked, lock, stop)) for w in range(6)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
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

    proc = start_server(bundle, db, port, log_file)  # restart on the same log
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
