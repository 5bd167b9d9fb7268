"""The inspection log's schema migrations: alembic revisions, one per schema version, for both engines.

Each revision in ``versions/`` carries its SQL per engine (``SQL = {"sqlite": script, "postgresql": statements}``):
SQLite keeps the exact scripts earlier releases ran (its schema text is what ``.schema`` shows), PostgreSQL
gets the same tables with its own types (BIGINT ids, DOUBLE PRECISION, a PL/pgSQL guard for the append-only
verdict history). Alembic applies them on PostgreSQL (:func:`upgrade`, run on open; no ``alembic.ini``). On
SQLite the same revisions are applied by the log itself with ``PRAGMA user_version`` as the version, so the base
install needs no SQLAlchemy and a file written by an earlier release upgrades in place; ``alembic upgrade head``
on a SQLite URL runs the very same statements (a test compares the two).
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

#: The folder alembic reads (``script_location``): ``env.py`` and ``versions/``.
SCRIPTS = Path(__file__).resolve().parent
#: The schema versions, oldest first: revision ``"0001"`` is schema 1.
REVISIONS = ("0001", "0002", "0003", "0004", "0005")
SCHEMA_VERSION = len(REVISIONS)


def revision(version: int) -> ModuleType:
    """The revision module of schema ``version`` (1-based)."""
    return importlib.import_module(f"defectlens.inspections.migrations.versions.v{REVISIONS[version - 1]}")


def sqlite_scripts() -> dict[int, str]:
    """Each schema version's SQLite script, by version."""
    return {v: str(revision(v).SQL["sqlite"]) for v in range(1, SCHEMA_VERSION + 1)}


def statements(script: str) -> Iterator[str]:
    """The SQL statements of a SQLite script, one at a time (a trigger's body stays whole)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()  # incomplete: SQLite names the error


def apply(sql: Mapping[str, Any], version: int) -> None:
    """A revision's ``upgrade()``: its statements for the connection's engine, through alembic's ``op``."""
    from alembic import op

    bind = op.get_bind()
    dialect = bind.dialect.name
    if dialect == "sqlite":
        for statement in statements(sql["sqlite"]):
            bind.exec_driver_sql(statement)
        bind.exec_driver_sql(f"PRAGMA user_version = {version}")
    else:
        for statement in sql["postgresql"]:
            bind.exec_driver_sql(statement)


def upgrade(connection: Any) -> None:
    """Bring the database behind ``connection`` (a SQLAlchemy Connection, inside a transaction) to the newest
    schema with alembic."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
