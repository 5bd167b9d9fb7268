"""Every surface takes the log as a path or a database URL and never prints its password: ``serve --db`` (and
``DEFECTLENS_DB``), a station file's ``log:`` and ``line --log/--db``, the Inspector's ``--db``."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectlens.cli import main
from defectlens.inspections import DatabaseURL

URL = "postgresql://ana:s3cret@db.plant:5432/qa"


@pytest.fixture
def served(monkeypatch):
    """The config ``serve()`` was called with, instead of serving (the ready line printed as it would be)."""
    calls: list[object] = []

    def fake(model, config, on_ready=None):
        calls.append(config)
        on_ready("http://127.0.0.1:8000/")

    monkeypatch.setattr("defectlens.serve.server.serve", fake)
    for name in ("DEFECTLENS_MODEL", "DEFECTLENS_DB", "DEFECTLENS_PORT", "DEFECTLENS_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return calls


@pytest.mark.parametrize("how", ["flag", "env"])
def test_serve_takes_a_postgresql_url_and_prints_it_masked(served, monkeypatch, capsys, how):
    args = ["serve", "--model", "m.dlens"]
    if how == "flag":
        args += ["--db", URL]
    else:
        monkeypatch.setenv("DEFECTLENS_DB", URL)
    assert main(args) == 0
    (config,) = served
    assert isinstance(config.db, DatabaseURL) and config.db.secret == URL
    err = capsys.readouterr().err
    assert "s3cret" not in err and "postgresql://ana:***@db.plant:5432/qa" in err.replace("\n", "")


def test_serve_takes_a_sqlite_url_as_the_file(served, tmp_path):
    assert main(["serve", "--model", "m.dlens", "--db", f"sqlite:///{tmp_path}/log.sqlite"]) == 0
    assert served[0].db == tmp_path / "log.sqlite"


def test_serve_refuses_another_database_naming_it_masked(served, capsys):
    assert main(["serve", "--model", "m.dlens", "--db", "mysql://ana:s3cret@db/qa"]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "mysql://ana:***@db/qa" in err and "s3cret" not in err and served == []


def _station(tmp_path: Path, log: str) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    path = tmp_path / "station.yaml"
    path.write_text(f"station: line-1\nmodel: m.dlens\nlog: {log}\nsource: {{type: folder, path: in}}\n")
    return path


def test_a_station_file_takes_a_database_url_or_a_sqlite_url_from_its_folder(tmp_path):
    pytest.importorskip("yaml")
    from defectlens.line.config import config_from_args, load_station_file

    config = load_station_file(_station(tmp_path, URL))
    assert isinstance(config.log, DatabaseURL) and config.log.secret == URL
    assert load_station_file(_station(tmp_path, "sqlite:///logs/a.sqlite")).log == tmp_path / "logs" / "a.sqlite"
    args = {"model": "m.dlens", "source": f"folder:{tmp_path / 'in'}", "sinks": []}
    assert config_from_args(**args, log=URL).log == DatabaseURL(URL)
    assert config_from_args(**args).log == Path("inspections.sqlite")


def test_a_station_file_with_another_database_is_refused_naming_the_file_and_key(tmp_path):
    pytest.importorskip("yaml")
    from defectlens.line.base import LineError
    from defectlens.line.config import load_station_file

    path = _station(tmp_path, "mysql://ana:s3cret@db/qa")
    with pytest.raises(LineError) as err:
        load_station_file(path)
    assert str(err.value).startswith(f"{path}: log: mysql://ana:***@db/qa: not a database")
    assert "s3cret" not in str(err.value)


def test_the_inspector_opens_a_url_given_with_db_and_shows_it_masked():
    pytest.importorskip("PIL")
    from defectlens.gui import settings
    from defectlens.gui.app import _choose_db

    where, origin, note = _choose_db(URL, settings.Settings())
    assert where == DatabaseURL(URL) and origin == "given with --db" and note == ""
    assert where.name == "qa" and "s3cret" not in f"inspection log: {where}"


def test_the_inspectors_log_writer_records_on_postgresql_and_says_when_it_cannot(pg_db):
    import queue

    pytest.importorskip("PIL")
    from defectlens.gui.logwriter import LogWriter
    from defectlens.inspections import parse_location
    from tests.unit.inspections.test_store import item

    url = parse_location(pg_db.replace("postgres@", "postgres:s3cret@"))
    messages: queue.Queue = queue.Queue()
    writer = LogWriter(url, messages)
    writer.submit("verdict", lambda log, rows: log.set_verdict(log.record(item("a.png")), "confirmed"), token=1)
    done = messages.get(timeout=30)
    assert (done.kind, done.token, done.error, done.result.verdict) == ("verdict", 1, None, "confirmed")
    writer.submit("verdict", lambda log, rows: log.set_verdict(10**6, "confirmed"), token=2)
    done = messages.get(timeout=30)
    assert done.error == "no inspection with id 1000000" and done.result is None
    writer.close()
