"""The inspection log checked against hand-written expectations (never the log itself as the oracle).

On both engines where a test takes ``log`` or ``where``, each test pins one thing a user or an operator relies
on: the exact refusals, the values read back, the integer limits of ids and offsets, the defaults (page size,
CSV chunk, lock timeout), the pragmas that make a committed id durable (SQLite), and that a failed rollback
never hides the error that caused it.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.inspections import Filters, InspectionLog, NewInspection
from defectlens.inspections.migrations import sqlite_scripts
from defectlens.inspections.store import Tally

MAX_ID = 9_223_372_036_854_775_807  # 2**63 - 1, written out
MIN_ID = -9_223_372_036_854_775_808  # -2**63
UTC_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00$")
HEADER = (
    "id,created_utc,source,client_name,image_sha256,image_bytes,width,height,status,reason,warning,"
    "ood_score,gate_flagged,prediction,probabilities,defect_probability,threshold,temperature,model_id,"
    "latency_ms,image_path,verdict,verdict_label,verdict_utc,comment,operator,station,captured_utc,part_id\r\n"
)


def new(name: str = "a.png", prediction: str | None = "defect", **kw) -> NewInspection:
    base = {
        "source": "api",
        "client_name": name,
        "image_sha256": "cd" * 32,
        "image_bytes": 7,
        "prediction": prediction,
    }
    base.update(kw)
    return NewInspection(**base)


def insert_raw(raw, where, row_id: int, name: str) -> None:
    """A row written by another program at a chosen id (ids run from -2**63 to 2**63 - 1 on both engines)."""
    raw(
        where,
        "INSERT INTO inspections (id, created_utc, source, client_name, image_sha256, image_bytes, status, "
        "prediction) VALUES (?, '2026-01-01T00:00:00.000+00:00', 'api', ?, 'ee', 1, 'ok', 'defect')",
        (row_id, name),
    )


# --- refusals, word for word ---------------------------------------------------------------------------


def test_unknown_verdict_message(log):
    i = log.record(new())
    with pytest.raises(DefectlensError) as err:
        log.set_verdict(i, "maybe")
    assert str(err.value) == "verdict must be one of confirmed, overridden, got 'maybe'"


def test_override_without_label_message(log):
    i = log.record(new())
    with pytest.raises(DefectlensError) as err:
        log.set_verdict(i, "overridden")
    assert str(err.value) == "an override needs the label the operator gives the part"


def test_override_to_the_same_class_message(log):
    i = log.record(new(prediction="defect"))
    with pytest.raises(DefectlensError) as err:
        log.set_verdict(i, "overridden", label="defect")
    assert str(err.value) == (
        f"inspection {i} is already decided 'defect': confirm it instead of overriding it to the same class"
    )
    assert log.verdicts(i) == []


def test_confirm_without_class_message(log):
    i = log.record(new(prediction=None, status="needs_review", reason="ood"))
    with pytest.raises(DefectlensError) as err:
        log.set_verdict(i, "confirmed")
    assert str(err.value) == (f"inspection {i} has no class to confirm (not judged): override it with the part's class")


def test_bad_status_message(log):
    with pytest.raises(DefectlensError) as err:
        log.record(new("x.png", status="maybe"))
    assert str(err.value) == "x.png: status must be one of ok, needs_review, error, dropped, got 'maybe'"


def test_unknown_id_message(log):
    with pytest.raises(DefectlensError) as err:
        log.set_verdict(12345, "confirmed")
    assert str(err.value) == "no inspection with id 12345"


# --- defaults: operator and comment are absent, not some placeholder ------------------------------------


def test_verdict_without_operator_or_comment_stores_null(log):
    i = log.record(new())
    got = log.set_verdict(i, "confirmed")
    assert (got.verdict, got.verdict_label, got.operator, got.comment) == ("confirmed", "defect", None, None)
    (entry,) = log.verdicts(i)
    assert (entry.inspection_id, entry.verdict, entry.label, entry.operator, entry.comment) == (
        i,
        "confirmed",
        "defect",
        None,
        None,
    )
    assert entry.created_utc == got.verdict_utc


def test_verdict_history_values_oldest_first(log):
    i = log.record(new(prediction="defect"))
    log.set_verdict(i, "overridden", label="ok", operator="ann", comment="scratch is dust")
    got = log.set_verdict(i, "confirmed", operator="bob")
    assert (got.verdict, got.verdict_label, got.operator, got.comment) == ("confirmed", "defect", "bob", None)
    history = log.verdicts(i)
    assert [(e.verdict, e.label, e.operator, e.comment) for e in history] == [
        ("overridden", "ok", "ann", "scratch is dust"),
        ("confirmed", "defect", "bob", None),
    ]
    assert history[0].id < history[1].id


# --- times are UTC with milliseconds and an explicit offset ---------------------------------------------


def test_times_are_utc_iso_with_offset(log):
    before = datetime.now(timezone.utc)
    i = log.record(new())
    got = log.set_verdict(i, "confirmed")
    after = datetime.now(timezone.utc)
    for stamp in (got.created_utc, got.verdict_utc, log.verdicts(i)[0].created_utc):
        assert UTC_MS.match(stamp), stamp
        when = datetime.fromisoformat(stamp)
        assert before - timedelta(seconds=1) <= when <= after + timedelta(seconds=1)


# --- ids and offsets at SQLite's integer limits ---------------------------------------------------------


def test_row_at_the_largest_id_is_found(where, raw):
    path = where()
    InspectionLog(path).close()
    insert_raw(raw, path, MAX_ID, "last.png")
    with InspectionLog(path) as log:
        got = log.get(MAX_ID)
        assert got is not None and got.id == MAX_ID and got.client_name == "last.png"
        log.set_verdict(MAX_ID, "overridden", label="ok")
        assert [(e.inspection_id, e.verdict, e.label) for e in log.verdicts(MAX_ID)] == [(MAX_ID, "overridden", "ok")]
        assert log.get(MAX_ID + 1) is None and log.verdicts(MAX_ID + 1) == []


def test_row_at_the_smallest_id_is_found(where, raw):
    path = where()
    InspectionLog(path).close()
    insert_raw(raw, path, MIN_ID, "first.png")
    with InspectionLog(path) as log:
        got = log.get(MIN_ID)
        assert got is not None and got.id == MIN_ID and got.client_name == "first.png"
        log.set_verdict(MIN_ID, "confirmed")
        assert [e.label for e in log.verdicts(MIN_ID)] == ["defect"]
        assert log.get(MIN_ID - 1) is None and log.verdicts(MIN_ID - 1) == []
        with pytest.raises(DefectlensError, match=r"^no inspection with id -9223372036854775809$"):
            log.set_verdict(MIN_ID - 1, "confirmed")


def test_negative_offsets_within_range_start_at_the_newest(log):
    ids = log.record_many([new("a.png"), new("b.png")])
    newest_first = [ids[1], ids[0]]
    assert [r.id for r in log.query(offset=MIN_ID)] == newest_first  # SQLite reads a negative offset as 0
    assert [r.id for r in log.query(offset=MIN_ID + 1)] == newest_first
    assert [r.id for r in log.query(offset=-1)] == newest_first
    assert log.query(offset=MIN_ID - 1) == []
    assert log.query(offset=MAX_ID) == []
    assert log.query(offset=MAX_ID + 1) == []


def test_a_negative_limit_is_no_limit_and_zero_is_none(log):
    ids = log.record_many([new(f"{n}.png") for n in range(3)])
    assert [r.id for r in log.query(limit=-1)] == ids[::-1]  # SQLite's reading of LIMIT -1, on both engines
    assert [r.id for r in log.query(limit=-(2**70))] == ids[::-1]
    assert log.query(limit=0) == [] and [r.id for r in log.query(limit=1, offset=-5)] == [ids[2]]


SKIP_INSERTS = {
    "sqlite": ["CREATE TRIGGER skip BEFORE INSERT ON inspections BEGIN SELECT RAISE(IGNORE); END"],
    "postgresql": [
        "CREATE FUNCTION skip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        "CREATE TRIGGER skip BEFORE INSERT ON inspections FOR EACH ROW EXECUTE FUNCTION skip()",
    ],
}


def test_insert_that_a_trigger_suppresses_returns_id_zero(where, raw):
    """An insert that wrote no row (a site's BEFORE INSERT trigger ignoring it) gets id 0, which names no row."""
    path = where()
    InspectionLog(path).close()
    for statement in SKIP_INSERTS[raw.engine]:
        raw(path, statement)
    with InspectionLog(path) as log:
        assert log.record(new()) == 0
        assert log.record_many([new("a.png"), new("b.png"), new("c.png")]) == [0, 0, 0]  # a group commit too
        assert log.get(0) is None and log.count() == 0


# --- page size and CSV chunks ---------------------------------------------------------------------------


def test_query_default_page_is_fifty_newest_first(log):
    ids = log.record_many([new(f"{n}.png") for n in range(51)])
    page = log.query()
    assert len(page) == 50
    assert [r.id for r in page] == list(reversed(ids))[:50]
    assert [r.id for r in log.query(offset=50)] == [ids[0]]


def test_csv_default_chunk_is_five_hundred_rows(log):
    log.record_many([new(f"{n}.png") for n in range(501)])
    pieces = list(log.iter_csv())
    assert pieces[0] == HEADER
    assert [piece.count("\r\n") for piece in pieces[1:]] == [500, 1]
    filtered = list(log.iter_csv(Filters(label="defect")))
    assert [piece.count("\r\n") for piece in filtered[1:]] == [500, 1]
    assert filtered[2].startswith("501,")


def test_csv_cells_by_hand(log):
    i = log.record(
        new(
            "=cmd.png",
            prediction="defect",
            probabilities={"ok": 0.25, "defect": 0.75},
            defect_probability=0.75,
            threshold=0.5,
            model_id="m1",
            gate_flagged=True,
            ood_score=1.5,
            width=4,
            height=3,
            station="s1",
            part_id="P-9",
        )
    )
    log.set_verdict(i, "overridden", label="ok", operator="ann")
    header, body = list(log.iter_csv())
    assert header == HEADER
    (cells,) = list(csv.reader(io.StringIO(body)))
    got = log.get(i)
    assert cells == [
        str(i),
        got.created_utc,
        "api",
        "'=cmd.png",  # a formula-looking name is defused
        "cd" * 32,
        "7",
        "4",
        "3",
        "ok",
        "",
        "",
        "1.5",
        "1",
        "defect",
        '{"ok": 0.25, "defect": 0.75}',
        "0.75",
        "0.5",
        "",
        "m1",
        "",
        "",
        "overridden",
        "ok",
        got.verdict_utc,
        "",
        "ann",
        "s1",
        "",
        "P-9",
    ]
    assert UTC_MS.match(cells[1]) and UTC_MS.match(cells[23])


# --- tally ----------------------------------------------------------------------------------------------


def test_tally_of_an_empty_log_is_all_zero(log):
    assert log.tally() == Tally(total=0, decided={}, needs_review=0, errors=0, flagged=0, dropped=0)
    assert log.tally().dropped == 0 and log.tally().needs_review == 0


def test_tally_counts_only_decisions_and_sums_flags_across_classes(log):
    log.record_many(
        [
            new("1", prediction="defect", gate_flagged=True),
            new("2", prediction="ok", gate_flagged=True),
            new("3", prediction="defect", gate_flagged=False),
            new("4", prediction="defect"),
            new("5", prediction="defect", status="error", reason="bad bytes", gate_flagged=True),
            new("6", prediction=None, status="needs_review", reason="ood", gate_flagged=True),
            new("7", prediction=None, status="dropped", reason="queue full"),
        ]
    )
    assert log.tally() == Tally(total=7, decided={"defect": 3, "ok": 1}, needs_review=1, errors=1, flagged=2, dropped=1)
    assert log.tally(Filters(status="error")) == Tally(
        total=1, decided={}, needs_review=0, errors=1, flagged=0, dropped=0
    )


# --- SQLite: opening, folders, connection settings, pragmas ----------------------------------------------


def test_open_creates_missing_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "c" / "log.sqlite"
    with InspectionLog(path) as log:
        assert log.record(new()) == 1
    assert path.is_file()


def test_connection_settings(tmp_path, monkeypatch):
    calls = []
    real = sqlite3.connect

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", spy)
    InspectionLog(tmp_path / "a.sqlite").close()
    InspectionLog(tmp_path / "b.sqlite", timeout=0.25).close()
    assert [(c["timeout"], c["isolation_level"], c["check_same_thread"]) for c in calls] == [
        (30.0, None, False),
        (0.25, None, False),
    ]


def test_pragmas(tmp_path):
    path = tmp_path / "log.sqlite"
    with InspectionLog(path) as log:
        db = log._engine._db
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert log.schema_version == 5
        assert log.integrity_check() == "ok"
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
        assert other.execute("PRAGMA user_version").fetchone()[0] == 5
    finally:
        other.close()


def test_schema_is_stored_as_written(tmp_path):
    """The schema keeps the migration's layout, one column per line, so `.schema` stays readable."""
    path = tmp_path / "log.sqlite"
    InspectionLog(path).close()
    db = sqlite3.connect(path)
    try:
        sql = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall())
    finally:
        db.close()
    assert sql["verdicts_no_update"] == (
        "CREATE TRIGGER verdicts_no_update BEFORE UPDATE ON verdicts\n"
        "        BEGIN SELECT RAISE(ABORT, 'the verdict history is append-only'); END"
    )
    assert sql["inspections"].startswith(
        "CREATE TABLE inspections (\n"
        "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "        created_utc TEXT NOT NULL,\n"
    )


# --- a failed rollback never hides the error that caused it ---------------------------------------------


class _RollbackFails:
    """The log's connection, except that inserts fail (a full disk) and so does the rollback after them."""

    def __init__(self, db: sqlite3.Connection):
        self._real = db

    def __getattr__(self, name):
        return getattr(self._real, name)

    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith("ROLLBACK"):
            raise sqlite3.OperationalError("rollback refused")
        if sql.startswith("INSERT INTO inspections"):
            raise sqlite3.OperationalError("database or disk is full")
        return self._real.execute(sql, *args)


def test_failed_rollback_keeps_the_original_error(tmp_path, monkeypatch):
    log = InspectionLog(tmp_path / "log.sqlite")
    real = log._engine._db
    monkeypatch.setattr(log._engine, "_db", _RollbackFails(real))
    with pytest.raises(sqlite3.OperationalError, match=r"^database or disk is full$"):
        log.record(new("lost.png"))
    assert real.in_transaction  # the rollback really failed
    monkeypatch.setattr(log._engine, "_db", real)
    i = log.record(new("next.png"))  # the next write rolls the stale transaction back first
    assert [r.client_name for r in log.query()] == ["next.png"]
    assert log.get(i).client_name == "next.png"


# --- migrations from every older schema keep the rows and their verdicts --------------------------------


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_migration_from_each_older_schema_keeps_rows(tmp_path, version):  # SQLite: files earlier releases wrote
    _MIGRATIONS = sqlite_scripts()

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("".join(_MIGRATIONS[v] for v in range(1, version + 1)) + f"\nPRAGMA user_version = {version};")
    db.execute(
        "INSERT INTO inspections (id, created_utc, source, client_name, image_sha256, image_bytes, status, "
        "prediction, probabilities, verdict, verdict_label, verdict_utc, operator, comment) VALUES "
        "(7, '2025-01-02T03:04:05.678+00:00', 'web', 'old.png', 'ff', 3, 'ok', 'defect', '{\"defect\": 0.9}', "
        "'overridden', 'ok', '2025-01-03T00:00:00.000+00:00', 'ann', 'dust')"
    )
    db.execute(
        "INSERT INTO inspections (id, created_utc, source, client_name, image_sha256, image_bytes, status) "
        "VALUES (8, '2025-01-04T00:00:00.000+00:00', 'api', 'err.png', 'ee', 0, 'error')"
    )
    db.commit()
    db.close()
    with InspectionLog(path) as log:
        assert log.schema_version == 5
        old = log.get(7)
        assert (old.client_name, old.prediction, old.probabilities) == ("old.png", "defect", {"defect": 0.9})
        assert (old.verdict, old.verdict_label, old.operator, old.comment) == ("overridden", "ok", "ann", "dust")
        assert old.warning == "" and old.ood_score is None and old.gate_flagged is None
        assert old.station is None and old.captured_utc is None and old.part_id is None
        assert [
            (e.inspection_id, e.verdict, e.label, e.operator, e.comment, e.created_utc) for e in log.verdicts(7)
        ] == [(7, "overridden", "ok", "ann", "dust", "2025-01-03T00:00:00.000+00:00")]
        assert log.verdicts(8) == []
        assert [r.id for r in log.query()] == [8, 7]
        assert log.record(new()) == 9


def test_newer_schema_refused_with_message(tmp_path):
    path = tmp_path / "new.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 6")
    db.close()
    with pytest.raises(DefectlensError) as err:
        InspectionLog(path)
    assert str(err.value) == (
        f"{path}: inspection log schema version 6 is newer than this defectlens understands (5); upgrade defectlens"
    )
