"""The inspection log under many writers (issue 30): rows/s and commit latency on SQLite and on PostgreSQL.

For 1, 2 and 4 writer processes at once (each a station or a service process with its own
:class:`~defectlens.inspections.InspectionLog`), every writer commits for ``--seconds`` as fast as it can:
one row per commit (a station's cadence: each verdict committed before the PLC hears of it) and, second,
``--group`` rows per commit (the web service's group commit under concurrent requests). Recorded per case:
rows/s over all writers, commits/s, and the commit latency (``record_many`` call to return) p50/p99/max in
ms, plus a check that the log holds exactly the rows the writers were given ids for.

SQLite: one file in a temporary folder (WAL, ``synchronous=FULL``, the log's settings). PostgreSQL: a private
server this script starts on 127.0.0.1 (``initdb`` from ``/usr/lib/postgresql/*/bin``, run as the ``postgres``
user under root), with its durable defaults (``fsync=on``, ``synchronous_commit=on``), or ``--url`` for a server
of yours (the script creates and drops a database ``bench_log_*`` in it). Both on the same disk and CPU.

    .venv/bin/python benchmarks/bench_log.py                     # 3 s per case: about a minute
    .venv/bin/python benchmarks/bench_log.py --seconds 10 --out /tmp/log.json

Needs the ``postgres`` extra and PostgreSQL (``make sysdeps``); results in ``benchmarks/results/log.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the private PostgreSQL server of the tests (tests/postgres_server.py)

from tests.postgres_server import running_server  # noqa: E402

from defectlens.inspections import InspectionLog, NewInspection  # noqa: E402
from machine import describe  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "log.json"
WRITERS = (1, 2, 4)


def row(name: str) -> NewInspection:
    """A decided row as the service logs one (every column a real row fills)."""
    return NewInspection(
        source="api", client_name=name, image_sha256="ab" * 32, image_bytes=48_213, prediction="defect",
        probabilities={"ok": 0.12, "defect": 0.88}, defect_probability=0.88, threshold=0.5, temperature=1.4,
        model_id="casting-int8-3f2a", latency_ms=21.5, width=300, height=300, gate_flagged=False, ood_score=1.25,
    )  # fmt: skip


def writer(location: str, name: str, group: int, start: Any, seconds: float, out: Any) -> None:
    """One writer process: wait for the start, commit groups of ``group`` rows for ``seconds``, report."""
    log = InspectionLog(location)
    latencies, ids, n = [], [], 0
    start.wait()
    deadline = time.perf_counter() + seconds
    while (t0 := time.perf_counter()) < deadline:
        ids += log.record_many([row(f"{name}-{n + k}") for k in range(group)])
        latencies.append(time.perf_counter() - t0)
        n += group
    log.close()
    out.put((name, latencies, ids))


def run_case(location: str, writers: int, group: int, seconds: float) -> dict[str, Any]:
    with InspectionLog(location) as log:
        before = log.count()
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=writer, args=(location, f"w{writers}g{group}p{k}", group, start, seconds, out))
        for k in range(writers)
    ]
    for p in procs:
        p.start()
    time.sleep(2.0)  # every process imported and opened its log
    start.set()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    latencies = np.array([x for _, lat, _ in results for x in lat]) * 1000.0
    given = [i for _, _, ids in results for i in ids]
    rows = len(given)
    with InspectionLog(location) as log:
        logged = log.count() - before
    return {
        "writers": writers,
        "rows_per_commit": group,
        "rows": rows,
        "rows_per_s": round(rows / seconds, 1),
        "commits_per_s": round(len(latencies) / seconds, 1),
        "commit_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 2),
            "p99": round(float(np.percentile(latencies, 99)), 2),
            "max": round(float(latencies.max()), 2),
        },
        "ids_unique": len(set(given)) == rows,
        "rows_in_log": logged,
    }


@contextmanager
def sqlite_location() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench-log-") as folder:
        yield str(Path(folder) / "log.sqlite")


@contextmanager
def postgres_location(url: str | None) -> Iterator[tuple[str, str]]:
    """A fresh database: on ``url``'s server, or on a private one; yields (URL, server version)."""
    import psycopg

    if url is not None:
        yield _database(psycopg, url)
        return
    with running_server(fsync=True) as server:
        yield _database(psycopg, server.url())


def _database(psycopg: Any, url: str) -> tuple[str, str]:
    name = f"bench_log_{int(time.time())}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        version = str(conn.execute("SHOW server_version").fetchone()[0])
        settings = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in ("fsync", "synchronous_commit")}
    return url.rsplit("/", 1)[0] + f"/{name}", f"{version} ({', '.join(f'{k}={v}' for k, v in settings.items())})"


def bench_engine(location: str, seconds: float, group: int) -> list[dict[str, Any]]:
    InspectionLog(location).close()  # migrated once, before the writers race to open it
    cases = []
    for g in (1, group):
        for n in WRITERS:
            case = run_case(location, n, g, seconds)
            print(
                f"  {n} writer(s) x {g} row(s)/commit: {case['rows_per_s']:>8} rows/s, "
                f"commit p50 {case['commit_ms']['p50']} ms, p99 {case['commit_ms']['p99']} ms",
                flush=True,
            )
            cases.append(case)
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long each case writes")
    parser.add_argument("--group", type=int, default=16, help="rows per commit in the group-commit cases")
    parser.add_argument("--url", default=None, help="a PostgreSQL server to use instead of a private one")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    machine = describe()
    engines: dict[str, Any] = {}
    print("SQLite", flush=True)
    with sqlite_location() as path:
        import sqlite3

        engines["sqlite"] = {"version": sqlite3.sqlite_version, "cases": bench_engine(path, args.seconds, args.group)}
    print("PostgreSQL", flush=True)
    with postgres_location(args.url) as (url, version):
        engines["postgresql"] = {"version": version, "cases": bench_engine(url, args.seconds, args.group)}
    lost = [c for e in engines.values() for c in e["cases"] if c["rows_in_log"] != c["rows"] or not c["ids_unique"]]
    result = {
        "benchmark": "inspection log writers (benchmarks/bench_log.py)",
        "command": " ".join(["benchmarks/bench_log.py", *(argv if argv is not None else sys.argv[1:])]),
        "seconds_per_case": args.seconds,
        "machine": machine,
        "engines": engines,
        "rows_lost_or_doubled": len(lost),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}; cases with rows lost or doubled: {len(lost)}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
