"""Verdicts are an append-only history: who, when, what; a new verdict never replaces the previous one (both
engines)."""

from __future__ import annotations

import random
import re
import sqlite3

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.inspections import MAX_ID, SCHEMA_VERSION, InspectionLog
from defectlens.inspections.migrations import sqlite_scripts
from tests.unit.inspections.test_store import item


def test_every_verdict_is_kept_in_order_and_the_newest_is_current(where):
    log = InspectionLog(where())
    a = log.record(item("a.png"))
    log.set_verdict(a, "confirmed", operator="ana", comment="scratch seen")
    log.set_verdict(a, "overridden", label="ok", operator="ben", comment="dust, wiped off")
    row = log.set_verdict(a, "confirmed", operator="cho")
    history = log.verdicts(a)
    assert [(v.verdict, v.label, v.operator, v.comment) for v in history] == [
        ("confirmed", "defect", "ana", "scratch seen"),
        ("overridden", "ok", "ben", "dust, wiped off"),
        ("confirmed", "defect", "cho", None),
    ]
    assert [v.created_utc for v in history] == sorted(v.created_utc for v in history)
    assert (row.verdict, row.verdict_label, row.operator, row.verdict_utc) == (
        "confirmed", "defect", "cho", history[-1].created_utc
    )  # fmt: skip
    assert log.verdicts(log.record(item("b.png"))) == []


@pytest.mark.parametrize("prediction", ["ok", "defect", "scratch", "=1+2"])
def test_overriding_to_the_class_already_predicted_is_refused(where, prediction):
    log = InspectionLog(where())
    a = log.record(item("a.png", prediction=prediction))
    with pytest.raises(DefectlensError, match=re.escape(f"already decided {prediction!r}: confirm it instead")):
        log.set_verdict(a, "overridden", label=prediction, operator="ana")
    assert log.verdicts(a) == [] and log.get(a).verdict is None
    other = "other" if prediction != "other" else "ok"
    assert log.set_verdict(a, "overridden", label=other).verdict_label == other
    review = log.record(item("b.png", status="needs_review", prediction=None, probabilities={}))
    assert log.set_verdict(review, "overridden", label=prediction).verdict_label == prediction  # no class to repeat


def test_the_history_cannot_be_rewritten(where, raw):
    log = InspectionLog(where())
    log.set_verdict(log.record(item("a.png")), "confirmed", operator="ana")
    statements = ["UPDATE verdicts SET operator = 'mallory'", "DELETE FROM verdicts"]
    if raw.engine == "postgresql":
        statements.append("TRUNCATE verdicts")
    for statement in statements:
        with pytest.raises(Exception, match="append-only"):  # sqlite3.IntegrityError, psycopg's RaiseException
            raw(where(), statement)
    assert [v.operator for v in log.verdicts(1)] == ["ana"]


def test_a_version_4_log_keeps_its_verdicts_as_the_first_history_entries(tmp_path):  # SQLite
    _MIGRATIONS = sqlite_scripts()

    rng = random.Random(4)
    path = tmp_path / "v4.sqlite"
    db = sqlite3.connect(path)
    db.executescript("".join(_MIGRATIONS[v] for v in range(1, 5)) + "\nPRAGMA user_version = 4;")
    given = {}
    for i in range(1, 41):
        verdict = rng.choice([None, "confirmed", "overridden"])
        label = {"confirmed": "defect", "overridden": "ok"}.get(verdict or "")
        when = f"2026-11-{1 + i % 28:02d}T08:00:00.000+00:00" if verdict else None
        operator = rng.choice([None, "ana", "ben"]) if verdict else None
        db.execute(
            "INSERT INTO inspections (created_utc, source, client_name, image_sha256, image_bytes, status, "
            "prediction, verdict, verdict_label, verdict_utc, operator, comment) "
            "VALUES ('2026-11-01T00:00:00.000+00:00', 'web', ?, 'aa', 3, 'ok', 'defect', ?, ?, ?, ?, ?)",
            (f"p{i}.png", verdict, label, when, operator, "old note" if verdict else None),
        )
        if verdict:
            given[i] = (verdict, label, operator, "old note", when)
    db.commit()
    db.close()
    with InspectionLog(path) as log:
        assert log.schema_version == SCHEMA_VERSION == 5
        for i in range(1, 41):
            history = [(v.verdict, v.label, v.operator, v.comment, v.created_utc) for v in log.verdicts(i)]
            assert history == ([given[i]] if i in given else [])
        first = next(iter(given))
        log.set_verdict(first, "confirmed", operator="cho")
        assert [v.operator for v in log.verdicts(first)] == [given[first][2], "cho"]


@pytest.mark.parametrize("huge", [MAX_ID + 1, 2**64, 10**30, -(2**63) - 1, -(10**40)])
def test_ids_and_offsets_past_sqlite_integers_name_no_row(where, huge):
    log = InspectionLog(where())
    log.record(item("a.png"))
    assert log.get(huge) is None and log.verdicts(huge) == []
    with pytest.raises(DefectlensError, match=f"no inspection with id {huge}"):
        log.set_verdict(huge, "confirmed")
    if huge > 0:
        assert log.query(offset=huge) == [] and len(log.query(limit=huge)) == 1
    assert log.get(MAX_ID) is None and log.query(offset=MAX_ID) == []
