"""The inspection log's PostgreSQL engine: SQLAlchemy 2 Core and psycopg 3 (the ``[postgres]`` extra).

Many processes on many machines write one log: each holds a small connection pool (checked before use, so a
server that went away and came back is found again without a restart), and every write is one transaction that
commits before the log returns, so an id a caller has been given is in the database; a write that fails is
rolled back whole and raised as :class:`~defectlens.inspections.engine.LogUnavailable`, naming the URL with its
password masked. The schema is migrated on open by alembic (:mod:`defectlens.inspections.migrations`) under an
advisory lock, so stations that start together migrate once; a database with a newer schema is refused.

SQLAlchemy, psycopg and alembic are imported here only when a PostgreSQL log is opened: ``import defectlens``
and the SQLite log never load them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from defectlens.core.errors import DefectlensError
from defectlens.inspections.engine import DatabaseURL, LogUnavailable, first_line, require_postgres
from defectlens.inspections.migrations import SCHEMA_VERSION, upgrade

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

#: The advisory lock key that serialises migrations of one database (any constant; "defectlens" in ASCII).
MIGRATION_LOCK = 0x6465666563746C
#: Connections one log holds open besides the ones a burst borrows (a service's log batcher, its readers).
POOL_SIZE, POOL_OVERFLOW = 4, 8


class _Session:
    """One connection's statements inside :meth:`PostgresEngine.write` or :meth:`PostgresEngine.read`."""

    def __init__(self, conn: Connection):
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return [dict(r._mapping) for r in self._conn.exec_driver_sql(_driver_sql(sql), tuple(params))]

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        """Run an ``INSERT``; the new row's id (0 when a trigger suppressed the row: 0 names no row)."""
        row = self._conn.exec_driver_sql(_driver_sql(sql) + " RETURNING id", tuple(params)).first()
        return 0 if row is None else int(row[0])

    def insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Run one ``INSERT`` per row in a single round trip (psycopg's pipelined ``executemany``); their ids, in
        order (0 for a row a trigger suppressed)."""
        if len(rows) < 2:
            return [self.insert(sql, r) for r in rows]
        ids = []
        raw = self._conn.connection.driver_connection  # psycopg's connection, in the same transaction
        assert raw is not None  # a connection checked out of the pool always has one
        with raw.cursor() as cur:
            cur.executemany(_driver_sql(sql) + " RETURNING id", [tuple(r) for r in rows], returning=True)
            while True:
                row = cur.fetchone()
                ids.append(0 if row is None else int(row[0]))
                if not cur.nextset():
                    return ids

    def run(self, sql: str, params: Sequence[Any]) -> None:
        self._conn.exec_driver_sql(_driver_sql(sql), tuple(params))


def _driver_sql(sql: str) -> str:
    """The log's statements use ``?`` placeholders (SQLite's); psycopg's are ``%s``."""
    return sql.replace("?", "%s")


class PostgresEngine:
    """The log in a PostgreSQL database (thread-safe: a pool of connections, one transaction per write).

    Args:
        url: the database (it must exist; the tables are created in it).
        timeout: seconds to wait for the server to answer a connection, and for a lock another writer holds.

    Raises:
        DefectlensError: without the ``[postgres]`` extra, for a server that refuses or does not answer, a
            database that does not exist or refuses the user, or a schema newer than this defectlens.
    """

    def __init__(self, url: DatabaseURL, *, timeout: float = 30.0):
        require_postgres(url)
        from sqlalchemy import create_engine
        from sqlalchemy.exc import SQLAlchemyError

        self.url = url
        wait_s = max(1, math.ceil(timeout))
        try:
            self._engine = create_engine(
                url.sqlalchemy_url,
                pool_pre_ping=True,  # a connection the server dropped is replaced before a write uses it
                pool_size=POOL_SIZE,
                max_overflow=POOL_OVERFLOW,
                pool_timeout=wait_s,
                hide_parameters=True,  # an error never carries an operator's comment or a client's file name
                connect_args={"connect_timeout": wait_s, "options": f"-c lock_timeout={int(timeout * 1000)}"},
            )
        except (SQLAlchemyError, ValueError) as exc:
            raise DefectlensError(f"{url}: not a usable database URL ({first_line(exc)})") from None
        try:
            self._migrate()
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise DefectlensError(
                f"{url}: cannot open the inspection log ({self._scrub(first_line(exc))}); check that the server "
                "runs and answers at this address, that the database exists and the user may write to it"
            ) from None
        except BaseException:
            self._engine.dispose()
            raise

    def _scrub(self, text: str) -> str:
        """``text`` without the URL's password, should a driver message ever quote it."""
        from sqlalchemy.engine import make_url

        password = make_url(self.url.sqlalchemy_url).password
        return text.replace(str(password), "***") if password else text

    def _unavailable(self, exc: Exception) -> LogUnavailable:
        return LogUnavailable(f"{self.url}: {self._scrub(first_line(exc))}")

    @contextmanager
    def write(self) -> Iterator[_Session]:
        """One transaction: committed when the block ends, rolled back whole on any exception; a database error
        becomes :class:`LogUnavailable` (the connection it broke is dropped from the pool)."""
        import psycopg
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self._engine.begin() as conn:
                yield _Session(conn)
        except (SQLAlchemyError, psycopg.Error) as exc:  # psycopg's own: a pipelined insert_many
            raise self._unavailable(exc) from exc

    @contextmanager
    def read(self) -> Iterator[_Session]:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self._engine.connect() as conn:
                yield _Session(conn)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def _migrate(self) -> None:
        with self._engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            current = _version(conn, self.url)
            if current > SCHEMA_VERSION:
                raise DefectlensError(
                    f"{self.url}: inspection log schema version {current} is newer than this defectlens "
                    f"understands ({SCHEMA_VERSION}); upgrade defectlens"
                )
            if current < SCHEMA_VERSION:
                upgrade(conn)  # one transaction: a failure leaves the previous version intact

    def schema_version(self) -> int:
        with self.read() as session:
            return _version(session._conn, self.url)

    def integrity_check(self) -> str:
        """``"ok"`` when the log's tables answer and the schema is this defectlens's (PostgreSQL checks its own
        pages; there is no file to scan)."""
        with self.read() as session:
            session.rows("SELECT 1 FROM inspections LIMIT 1")
            session.rows("SELECT 1 FROM verdicts LIMIT 1")
            version = _version(session._conn, self.url)
        return "ok" if version == SCHEMA_VERSION else f"schema version {version}, expected {SCHEMA_VERSION}"

    def close(self) -> None:
        self._engine.dispose()


def _version(conn: Connection, url: DatabaseURL) -> int:
    """The schema version alembic recorded (0 for a database without the log's tables)."""
    if conn.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar() is None:
        return 0
    revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    if revision is None:
        return 0
    if not str(revision).isdigit():
        raise DefectlensError(f"{url}: alembic revision {revision!r} is not the inspection log's (another app?)")
    return int(revision)
