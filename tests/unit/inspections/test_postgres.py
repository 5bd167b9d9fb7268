"""The log's location and its PostgreSQL engine: URLs and masked passwords, the extra it needs, a server that
refuses or goes away and comes back, alembic's migrations (from every revision, on both engines, at once)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.inspections import DatabaseURL, InspectionLog, LogUnavailable, parse_location
from defectlens.inspections.engine import mask
from defectlens.inspections.migrations import SCHEMA_VERSION, sqlite_scripts
from tests.postgres_server import Server, _free_port, running_server
from tests.unit.inspections.conftest import Raw
from tests.unit.inspections.test_store import item

# --- locations: a path, sqlite:///, postgresql:// -------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("log.sqlite", Path("log.sqlite")),
        ("  runs/log.sqlite ", Path("runs/log.sqlite")),
        ("sqlite:///runs/log.sqlite", Path("runs/log.sqlite")),
        ("sqlite:////var/lib/log.sqlite", Path("/var/lib/log.sqlite")),
        ("SQLITE:///log.sqlite", Path("log.sqlite")),
        (Path("C:/logs/x.sqlite"), Path("C:/logs/x.sqlite")),
    ],
)
def test_paths_and_sqlite_urls_are_sqlite_files(given, path):
    assert parse_location(given) == path


@pytest.mark.parametrize(
    "url", ["postgresql://ana:s3cret@db.plant:5432/qa", "postgresql+psycopg://ana:s3cret@db/qa", "postgres://ana@db/qa"]
)
def test_postgresql_urls_print_without_their_password(url):
    found = parse_location(url)
    assert isinstance(found, DatabaseURL) and found.secret == url
    assert "s3cret" not in str(found) and "s3cret" not in repr(found) and "s3cret" not in f"{found}"
    assert found.sqlalchemy_url.startswith("postgresql+psycopg://")
    assert found.sqlalchemy_url.endswith(url.split("://", 1)[1])


def test_mask_hides_the_password_in_the_user_part_and_the_query():
    assert mask("postgresql://ana:s3cret@db:5432/qa") == "postgresql://ana:***@db:5432/qa"
    assert mask("postgresql://ana@db/qa?password=s3cret&sslmode=require") == (
        "postgresql://ana@db/qa?password=***&sslmode=require"
    )
    assert mask("postgresql://db/qa") == "postgresql://db/qa"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "the inspection log location is empty"),
        ("mysql://ana:s3cret@db/qa", "mysql://ana:***@db/qa: not a database the inspection log runs on"),
        ("sqlite://", "a SQLite log needs a file"),
    ],
)
def test_other_databases_and_empty_locations_are_refused(given, message):
    with pytest.raises(DefectlensError, match=r"give a file path, sqlite:///PATH or postgresql://|needs a file") as err:
        parse_location(given)
    assert message in str(err.value) and "s3cret" not in str(err.value)


def test_a_url_the_driver_cannot_read_is_refused_naming_it(pg_server):
    with pytest.raises(DefectlensError, match=r"^postgresql://ana:\*\*\*@db:port/qa: not a usable database URL \("):
        InspectionLog("postgresql://ana:s3cret@db:port/qa")


def test_postgresql_without_the_extra_says_how_to_install_it(monkeypatch):
    import importlib

    real = importlib.import_module

    def without_sqlalchemy(name, *args):
        if name == "sqlalchemy":
            raise ImportError("No module named 'sqlalchemy'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_sqlalchemy)
    with pytest.raises(DefectlensError) as err:
        InspectionLog("postgresql://ana:s3cret@127.0.0.1/qa")
    assert "pip install 'defectlens[postgres]'" in str(err.value) and "'sqlalchemy'" in str(err.value)
    assert str(err.value).startswith("postgresql://ana:***@127.0.0.1/qa:")


def test_the_sqlite_log_never_imports_sqlalchemy(tmp_path):
    code = (
        "import sys; from defectlens.inspections import InspectionLog; "
        f"log = InspectionLog({str(tmp_path / 'log.sqlite')!r}); log.count(); log.close(); "
        "assert not {'sqlalchemy', 'psycopg', 'alembic'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- a server that refuses, a database that is missing --------------------------------------------------------


def test_a_refused_connection_names_the_url_without_its_password(pg_server):
    url = f"postgresql://ana:s3cret@127.0.0.1:{_free_port()}/qa"
    with pytest.raises(DefectlensError) as err:
        InspectionLog(url, timeout=2)
    text = str(err.value)
    assert text.startswith("postgresql://ana:***@127.0.0.1:") and "s3cret" not in text
    assert "cannot open the inspection log" in text and "refused" in text.lower()


def test_a_missing_database_is_named(pg_server):
    with pytest.raises(DefectlensError, match=r'/no_such_db: cannot open the inspection log \(.*"no_such_db"'):
        InspectionLog(pg_server.url("no_such_db"))


def test_a_newer_schema_is_refused(pg_db):
    url = pg_db
    InspectionLog(url).close()
    Raw("postgresql")(url, "UPDATE alembic_version SET version_num = '0006'")
    with pytest.raises(DefectlensError) as err:
        InspectionLog(url)
    assert str(err.value) == (
        f"{url}: inspection log schema version 6 is newer than this defectlens understands (5); upgrade defectlens"
    )


# --- a database that goes away mid-run, and comes back ---------------------------------------------------------


@pytest.fixture
def own_server():
    """A server of this test's own, to stop and start."""
    pytest.importorskip("psycopg")
    try:
        with running_server(fsync=False) as server:
            yield server
    except RuntimeError as exc:
        pytest.skip(str(exc))


def test_a_server_that_goes_away_fails_writes_and_the_log_recovers_when_it_returns(own_server: Server):
    url = own_server.create_database().replace("postgres@", "postgres:s3cret@")  # trust auth ignores it
    log = InspectionLog(url, timeout=2)
    first = log.record(item("a.png"))
    own_server.stop()
    for write in (lambda: log.record(item("lost.png")), lambda: log.set_verdict(first, "confirmed")):
        with pytest.raises(LogUnavailable) as err:
            write()
        assert isinstance(err.value, sqlite3.OperationalError)  # what the surfaces answer with 503 / a message
        assert str(err.value).startswith(str(log.path)) and "s3cret" not in str(err.value)
    with pytest.raises(LogUnavailable):
        log.count()
    own_server.start()
    second = log.record(item("b.png"))
    assert [r.client_name for r in log.query()] == ["b.png", "a.png"] and second > first
    assert log.get(first).verdict is None  # the verdict that failed was never recorded
    log.close()


def test_a_failed_statement_is_rolled_back_whole_and_the_next_write_succeeds(pg_db):
    url = pg_db
    log = InspectionLog(url)
    raw = Raw("postgresql")
    raw(url, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$")
    raw(url, "CREATE TRIGGER refuse BEFORE INSERT ON inspections FOR EACH ROW WHEN (NEW.client_name = 'bad.png') "
             "EXECUTE FUNCTION refuse()")  # fmt: skip
    with pytest.raises(LogUnavailable, match="injected"):
        log.record_many([item("a.png"), item("bad.png"), item("c.png")])
    assert log.count() == 0
    assert log.record_many([item("a.png"), item("c.png")]) and log.count() == 2
    log.close()


def test_a_failed_commit_is_rolled_back_and_raised(pg_db):
    """A deferred constraint fails only at ``COMMIT``: the write is refused, none of its rows are in the log."""
    url = pg_db
    log = InspectionLog(url)
    raw = Raw("postgresql")
    raw(url, "CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    raw(url, "CREATE TABLE child (ref INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
    raw(url, "CREATE FUNCTION orphan() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO child VALUES (-1); "
             "RETURN NEW; END $$")  # fmt: skip
    raw(url, "CREATE TRIGGER orphan AFTER INSERT ON inspections FOR EACH ROW WHEN (NEW.client_name = 'bad.png') "
             "EXECUTE FUNCTION orphan()")  # fmt: skip
    with pytest.raises(LogUnavailable, match="foreign key"):
        log.record_many([item("a.png"), item("bad.png")])
    assert log.count() == 0 and log.record(item("c.png")) and log.count() == 1
    log.close()


def test_a_write_waits_its_timeout_for_a_lock_then_fails(pg_db):
    import psycopg

    log = InspectionLog(pg_db, timeout=0.3)
    with psycopg.connect(pg_db) as other:
        other.execute("LOCK TABLE inspections IN EXCLUSIVE MODE")
        start = time.monotonic()
        with pytest.raises(LogUnavailable, match="lock timeout"):
            log.record(item("a.png"))
        assert time.monotonic() - start < 10  # its own timeout, not the default 30 s
    assert log.record(item("b.png")) and [r.client_name for r in log.query()] == ["b.png"]
    log.close()


# --- migrations with alembic ------------------------------------------------------------------------------------


def _alembic_to(url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from defectlens.inspections.migrations import SCRIPTS

    engine = create_engine(DatabaseURL(url).sqlalchemy_url if "://" in url and "sqlite" not in url else url)
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    engine.dispose()


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_alembic_migrates_each_older_revision_keeping_rows_and_verdicts(pg_db, version):
    url = pg_db
    _alembic_to(url, f"{version:04d}")
    raw = Raw("postgresql")
    raw(
        url,
        "INSERT INTO inspections (id, created_utc, source, client_name, image_sha256, image_bytes, status, "
        "prediction, probabilities, verdict, verdict_label, verdict_utc, operator, comment) VALUES "
        "(7, '2025-01-02T03:04:05.678+00:00', 'web', 'old.png', 'ff', 3, 'ok', 'defect', '{\"defect\": 0.9}', "
        "'overridden', 'ok', '2025-01-03T00:00:00.000+00:00', 'ann', 'dust')",
    )
    with InspectionLog(url) as log:
        assert log.schema_version == SCHEMA_VERSION
        old = log.get(7)
        assert (old.client_name, old.probabilities, old.verdict_label, old.warning) == (
            "old.png", {"defect": 0.9}, "ok", ""
        )  # fmt: skip
        assert [(e.verdict, e.label, e.operator, e.created_utc) for e in log.verdicts(7)] == [
            ("overridden", "ok", "ann", "2025-01-03T00:00:00.000+00:00")
        ]
        assert log.record(item("new.png", gate_flagged=True)) == 1  # the identity was not moved by the raw id
        assert log.tally().flagged == 1


def test_alembic_on_a_sqlite_file_writes_the_schema_the_log_writes(tmp_path):
    pytest.importorskip("alembic")
    by_log, by_alembic = tmp_path / "log.sqlite", tmp_path / "alembic.sqlite"
    InspectionLog(by_log).close()
    _alembic_to(f"sqlite:///{by_alembic}", "head")

    def schema(path: Path) -> tuple[object, ...]:
        db = sqlite3.connect(path)
        try:
            sql = "SELECT type, name, sql FROM sqlite_master WHERE tbl_name NOT LIKE 'alembic%' ORDER BY name"
            return (db.execute("PRAGMA user_version").fetchone()[0], db.execute(sql).fetchall())
        finally:
            db.close()

    assert schema(by_alembic) == schema(by_log) and schema(by_log)[0] == SCHEMA_VERSION
    assert len(sqlite_scripts()) == SCHEMA_VERSION


def test_stations_opening_a_new_database_at_once_migrate_it_once(pg_db):
    url = pg_db
    errors: list[BaseException] = []

    def open_and_write(k: int) -> None:
        try:
            with InspectionLog(url) as log:
                log.record(item(f"{k}.png"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with InspectionLog(url) as log:
        assert log.count() == 4 and log.schema_version == SCHEMA_VERSION
    assert Raw("postgresql")(url, "SELECT version_num FROM alembic_version") == [("0005",)]
