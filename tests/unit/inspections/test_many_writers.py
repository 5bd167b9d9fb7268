"""Many writers, nothing lost: four processes write one PostgreSQL log at once, one is killed with ``kill -9`` under
load; every id a writer was given is in the log under its row, no row is there twice, and the others keep going."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.unit.inspections.conftest import Raw

ROOT = Path(__file__).resolve().parents[3]
WRITERS, BATCH = 4, 4


def _collect(proc: subprocess.Popen[str], into: list[tuple[int, str]]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        row_id, name = line.split()
        into.append((int(row_id), name))


def _wait_for(condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_four_writers_one_killed_nothing_acknowledged_is_lost_or_doubled(pg_db):
    cmd = [sys.executable, "-m", "tests.unit.inspections.log_writer", pg_db]
    procs = [
        subprocess.Popen([*cmd, f"w{k}", str(BATCH)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for k in range(WRITERS)
    ]
    acked: list[list[tuple[int, str]]] = [[] for _ in procs]
    readers = [threading.Thread(target=_collect, args=(p, a), daemon=True) for p, a in zip(procs, acked, strict=True)]
    for r in readers:
        r.start()
    try:
        _wait_for(lambda: all(len(a) >= 25 * BATCH for a in acked), "every writer's first commits")
        os.kill(procs[0].pid, signal.SIGKILL)  # mid-stream: the other three are writing at this moment
        procs[0].wait(timeout=30)
        at_kill = [len(a) for a in acked]
        _wait_for(
            lambda: all(len(acked[k]) >= at_kill[k] + 50 * BATCH for k in range(1, WRITERS)),
            "the surviving writers to keep committing",
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait(timeout=30)
        for r in readers:
            r.join(timeout=30)
    rows = dict(Raw("postgresql")(pg_db, "SELECT id, client_name FROM inspections"))
    names = list(rows.values())
    assert len(names) == len(set(names)), "a row is in the log twice"
    for k, given in enumerate(acked):
        assert given, f"writer {k} committed nothing"
        missing = [(i, n) for i, n in given if rows.get(i) != n]
        assert missing == [], f"writer {k}: acknowledged rows not in the log: {missing[:5]}"
    killed = [n for n in names if n.startswith("w0-")]
    # the killed writer's rows: every acknowledged one, and at most the one batch it had committed unannounced
    assert len(acked[0]) <= len(killed) <= len(acked[0]) + BATCH
    assert len(rows) >= sum(len(a) for a in acked)
