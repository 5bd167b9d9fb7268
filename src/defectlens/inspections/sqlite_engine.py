"""The inspection log's SQLite engine: one file, one connection behind a lock, the single writer.

Durability: WAL journal, ``synchronous=FULL``; a write's transaction is committed before the log returns, so an
id a caller has been given survives a crash or ``kill -9``. The schema version is ``PRAGMA user_version``; the
migrations (the alembic revisions' SQLite scripts) run forward on open, one transaction per version, and a file
written by a newer defectlens is refused rather than damaged.

Every write goes through :meth:`SQLiteEngine.write`: ``BEGIN IMMEDIATE``, ``COMMIT``, and ``ROLLBACK`` on any
failure, a failed ``COMMIT`` included, so a write that fails (a locked or full database, a read-only file, a
constraint) leaves the shared connection ready for the next one. Only the standard library: the base install
runs it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.inspections.migrations import SCHEMA_VERSION, sqlite_scripts, statements


class SQLiteEngine:
    """The log's SQLite file (thread-safe; one connection, one writer).

    Args:
        path: the SQLite file (created with its folder when missing).
        timeout: seconds a write waits for another process's lock before it fails ("database is locked").

    Raises:
        DefectlensError: for a file that is not a SQLite database, or one written by a newer schema.
    """

    def __init__(self, path: Path, *, timeout: float = 30.0):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=timeout)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")  # a verdict names an inspection that exists
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise DefectlensError(f"{self.path}: not a usable inspection log ({exc})") from None

    @contextmanager
    def write(self) -> Iterator[SQLiteEngine]:
        """One write: under the lock, ``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on any exception,
        a failed ``COMMIT`` included (a deferred constraint, an I/O error), so the shared connection is never
        left inside a transaction and the next write starts clean."""
        with self._lock:
            self._rollback()  # only a failed rollback could have left one open; never build on it
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[SQLiteEngine]:
        with self._lock:
            yield self

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return list(self._db.execute(sql, params).fetchall())

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        """Run an ``INSERT``; the new row's id (0 when a trigger suppressed the row: 0 names no row)."""
        return int(self._db.execute(sql, params).lastrowid or 0)

    def insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        return [self.insert(sql, r) for r in rows]

    def run(self, sql: str, params: Sequence[Any]) -> None:
        self._db.execute(sql, params)

    def _rollback(self) -> None:
        if self._db.in_transaction:
            # the exception being handled says what went wrong; a rollback that fails too adds nothing to it
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _migrate(self) -> None:
        current = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if current > SCHEMA_VERSION:
            raise DefectlensError(
                f"{self.path}: inspection log schema version {current} is newer than this defectlens "
                f"understands ({SCHEMA_VERSION}); upgrade defectlens"
            )
        scripts = sqlite_scripts()
        for version in range(current + 1, SCHEMA_VERSION + 1):
            # one transaction per step: a failure mid-migration leaves the previous version intact
            with self.write():
                for statement in statements(scripts[version]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {version}")

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` (``"ok"`` for a sound file)."""
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
