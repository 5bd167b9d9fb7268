"""A write that fails leaves the log ready for the next one: every kind of write, every kind of failure (SQLite;
PostgreSQL's failures, a server that goes away included, are in ``test_postgres.py``).

Each failure is injected the way it happens on a line PC: a trigger that aborts the statement (a constraint,
a check another tool added), a deferred constraint that fails only at ``COMMIT``, a log SQLite may not write
(``PRAGMA query_only``: what it answers for a read-only file, even to root, who ignores file modes), a full
disk (``max_page_count``) and a database another process holds locked. After each, nothing of the failed
write is in the log, and recording and judging work again.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.inspections import InspectionLog
from tests.unit.inspections.test_store import item

BIG = "x" * 200_000  # needs new pages: a full disk refuses it


def raise_on(event: str, table: str) -> Callable[[InspectionLog], Iterator[None]]:
    @contextmanager
    def inject(log: InspectionLog) -> Iterator[None]:
        with sqlite3.connect(log.path) as other:
            other.execute(
                f"CREATE TRIGGER injected BEFORE {event} ON {table} BEGIN SELECT RAISE(ABORT, 'injected'); END"
            )
        yield
        with sqlite3.connect(log.path) as other:
            other.execute("DROP TRIGGER injected")

    return inject


@contextmanager
def commit_fails(log: InspectionLog) -> Iterator[None]:
    """Every write adds a row that breaks a deferred foreign key: the statements pass, ``COMMIT`` fails."""
    with sqlite3.connect(log.path) as other:
        other.executescript(
            """
            CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS child (ref INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
            CREATE TRIGGER on_insert AFTER INSERT ON inspections BEGIN INSERT INTO child VALUES (-1); END;
            CREATE TRIGGER on_update AFTER UPDATE ON inspections BEGIN INSERT INTO child VALUES (-1); END;
            CREATE TRIGGER on_history AFTER INSERT ON verdicts BEGIN INSERT INTO child VALUES (-1); END;
            """
        )
    yield
    with sqlite3.connect(log.path) as other:
        other.executescript("DROP TRIGGER on_insert; DROP TRIGGER on_update; DROP TRIGGER on_history;")


@contextmanager
def read_only(log: InspectionLog) -> Iterator[None]:
    log._engine._db.execute("PRAGMA query_only = ON")
    yield
    log._engine._db.execute("PRAGMA query_only = OFF")


@contextmanager
def disk_full(log: InspectionLog) -> Iterator[None]:
    pages = log._engine._db.execute("PRAGMA page_count").fetchone()[0]
    log._engine._db.execute(f"PRAGMA max_page_count = {pages}")
    yield
    log._engine._db.execute("PRAGMA max_page_count = 1000000")


@contextmanager
def locked(log: InspectionLog) -> Iterator[None]:
    """Another process holds the write lock (the log waits its short timeout, then fails)."""
    other = sqlite3.connect(log.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    yield
    other.execute("ROLLBACK")
    other.close()


@dataclass(frozen=True)
class Failure:
    name: str
    inject: Callable[[InspectionLog], object]
    hits: frozenset[str]  # the kinds of write it breaks


ALL = frozenset({"record", "record_many", "confirm", "override"})
FAILURES = [
    Failure("insert trigger", raise_on("INSERT", "inspections"), frozenset({"record", "record_many"})),
    Failure("update trigger", raise_on("UPDATE", "inspections"), frozenset({"confirm", "override"})),
    Failure("history trigger", raise_on("INSERT", "verdicts"), frozenset({"confirm", "override"})),
    Failure("commit fails", commit_fails, ALL),
    Failure("read-only", read_only, ALL),
    Failure("disk full", disk_full, ALL),
    Failure("locked", locked, ALL),
]


def write(log: InspectionLog, kind: str, target: int) -> None:
    """One write of ``kind``; ``target`` is a decided (``defect``) row without a verdict yet."""
    if kind == "record":
        log.record(item(BIG))
    elif kind == "record_many":
        log.record_many([item("a.png"), item(BIG), item("c.png")])
    elif kind == "confirm":
        log.set_verdict(target, "confirmed", comment=BIG, operator="ana")
    else:
        log.set_verdict(target, "overridden", label="ok", comment=BIG, operator="ana")


def snapshot(log: InspectionLog, target: int) -> tuple[int, object, int]:
    row = log.get(target)
    assert row is not None
    return log.count(), (row.verdict, row.verdict_label, row.comment), len(log.verdicts(target))


CASES = [(f, kind) for f in FAILURES for kind in sorted(ALL) if kind in f.hits]


@pytest.mark.parametrize(("failure", "kind"), CASES, ids=[f"{f.name}-{k}" for f, k in CASES])
def test_a_failed_write_leaves_nothing_and_the_next_writes_succeed(tmp_path, failure, kind):
    log = InspectionLog(tmp_path / "log.sqlite", timeout=0.05)
    target = log.record(item("target.png"))
    log.set_verdict(target, "confirmed", operator="first")  # history of one: a failed verdict must keep it
    before = snapshot(log, target)
    with failure.inject(log), pytest.raises(sqlite3.Error):
        write(log, kind, target)
    assert snapshot(log, target) == before  # nothing of the failed write, the earlier verdict kept
    assert not log._engine._db.in_transaction  # the shared connection is not left inside the failed transaction
    after = log.record(item("after.png"))
    assert log.get(after) is not None and log.count() == before[0] + 1
    write(log, kind, target)  # the same write now goes through
    log.set_verdict(after, "overridden", label="ok", operator="ana")
    assert [v.operator for v in log.verdicts(after)] == ["ana"]
    assert log.integrity_check() == "ok"


@pytest.mark.parametrize("seed", range(6))
def test_random_failures_between_writes_never_corrupt_the_log(tmp_path, seed):
    """A generated sequence of writes, some under a failure: the log equals a model of the writes that passed."""
    rng = random.Random(seed)
    log = InspectionLog(tmp_path / "log.sqlite", timeout=0.05)
    rows, history = [log.record(item("first.png"))], {}
    for _ in range(24):
        kind = rng.choice(sorted(ALL))
        failure = rng.choice([None, *FAILURES])
        target = rng.choice(rows)
        if failure is not None and kind in failure.hits:
            with failure.inject(log), pytest.raises(sqlite3.Error):
                write(log, kind, target)
        else:
            count = log.count()
            if failure is None:
                write(log, kind, target)
            else:
                with failure.inject(log):
                    write(log, kind, target)
            added = log.count() - count
            rows += [r.id for r in log.query(limit=added)] if added else []
            if kind in ("confirm", "override"):
                history[target] = history.get(target, 0) + 1
        assert len(log.verdicts(target)) == history.get(target, 0)
    assert log.count() == len(rows) and log.integrity_check() == "ok"


def test_a_failed_migration_leaves_the_previous_version_intact(tmp_path):
    from defectlens.inspections.migrations import sqlite_scripts

    _MIGRATIONS = sqlite_scripts()

    path = tmp_path / "v4.sqlite"
    db = sqlite3.connect(path)
    db.executescript("".join(_MIGRATIONS[v] for v in range(1, 5)) + "\nPRAGMA user_version = 4;")
    db.execute("CREATE TABLE verdicts (x)")  # someone's table in the way of migration 5
    db.commit()
    db.close()
    with pytest.raises(DefectlensError, match=r"not a usable inspection log .*verdicts already exists"):
        InspectionLog(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    assert "station" in [r[1] for r in db.execute("PRAGMA table_info(inspections)")]
    db.close()
