"""The log's tests run on both engines: ``where(name)`` is a fresh log location on the test's engine (a SQLite
file, or a new database on a private PostgreSQL server), ``raw`` runs SQL on it as another program would."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.postgres_server import drop_database, pg_server  # noqa: F401  (the session's server)

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def where(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Any]]:
    """``where(name="log")``: the location of log ``name`` (the same one for the same name within a test)."""
    server = request.getfixturevalue("pg_server") if engine == "postgresql" else None
    made: dict[str, Any] = {}

    def make(name: str = "log") -> Any:
        if name not in made:
            made[name] = tmp_path / f"{name}.sqlite" if server is None else server.create_database()
        return made[name]

    yield make
    if server is not None:
        for url in made.values():
            drop_database(server, url)


class Raw:
    """SQL on a log's database over a connection of its own (``?`` placeholders on both engines)."""

    def __init__(self, engine: str):
        self.engine = engine

    def __call__(self, location: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.engine == "sqlite":
            db = sqlite3.connect(location, isolation_level=None)
            try:
                cur = db.execute(sql, params)
                return cur.fetchall() if cur.description else []
            finally:
                db.close()
        import psycopg

        with psycopg.connect(str(location), autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []


@pytest.fixture
def raw(engine: str) -> Raw:
    return Raw(engine)


@pytest.fixture
def log(where: Callable[[str], Any]) -> Iterator[Any]:
    from defectlens.inspections import InspectionLog

    with InspectionLog(where("log")) as opened:
        yield opened


@pytest.fixture
def pg_db(pg_server: Any) -> Iterator[str]:  # noqa: F811  (the imported fixture, requested)
    """A new database on the session's PostgreSQL server (PostgreSQL-only tests); dropped afterwards."""
    url = pg_server.create_database()
    yield url
    drop_database(pg_server, url)
