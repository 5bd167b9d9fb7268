"""The shared inspection log: durable inserts, verdicts, filters, CSV, schema versioning (both engines, except
where a test says SQLite: the file's own pragmas and the schemas earlier releases wrote)."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.inspections import SCHEMA_VERSION, Filters, ImageStore, InspectionLog, NewInspection
from defectlens.inspections.migrations import sqlite_scripts


def item(name: str, prediction: str = "defect", **kw) -> NewInspection:
    base = {
        "source": "api",
        "client_name": name,
        "image_sha256": "ab" * 32,
        "image_bytes": 10,
        "prediction": prediction,
        "probabilities": {"ok": 0.2, "defect": 0.8},
        "defect_probability": 0.8,
        "threshold": 0.5,
        "temperature": 1.2,
        "model_id": "m1",
        "latency_ms": 3.5,
    }
    base.update(kw)
    return NewInspection(**base)


def test_record_get_and_verdicts(where):
    log = InspectionLog(where())
    (a,) = [log.record(item("../../etc/passwd"))]  # a client name is data, never a path
    b = log.record(item("b.png", prediction="ok", probabilities={"ok": 0.9, "defect": 0.1}))
    got = log.get(a)
    assert got.client_name == "../../etc/passwd" and got.probabilities == {"ok": 0.2, "defect": 0.8}
    assert log.set_verdict(a, "confirmed", comment="seen").verdict_label == "defect"
    over = log.set_verdict(b, "overridden", label="defect", operator="anna")
    assert (over.verdict, over.verdict_label, over.operator) == ("overridden", "defect", "anna") and over.verdict_utc
    with pytest.raises(DefectlensError, match="needs the label"):
        log.set_verdict(b, "overridden")
    with pytest.raises(DefectlensError, match="verdict must be one of"):
        log.set_verdict(b, "maybe")
    with pytest.raises(DefectlensError, match="no inspection with id 99"):
        log.set_verdict(99, "confirmed")
    assert log.get(99) is None
    assert [i.id for i in log.query()] == [b, a]  # newest first
    assert [i.id for i in log.query(Filters(label="ok"))] == [b]
    assert [i.id for i in log.query(Filters(verdict="overridden"))] == [b]
    assert log.count(Filters(verdict="none")) == 0 and log.count() == 2
    assert log.query(Filters(since="2999-01-01")) == []
    assert log.integrity_check() == "ok"


def test_rows_survive_reopening_and_csv_streams_every_row(where, engine):
    path = where()
    with InspectionLog(path) as log:
        ids = log.record_many([item(f"p{i}.png") for i in range(1203)])
    with InspectionLog(path) as log:
        assert log.count() == 1203 and log.get(ids[-1]).client_name == "p1202.png"
        text = "".join(log.iter_csv(chunk=500))
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == 1203 and rows[0]["client_name"] == "p0.png" and rows[0]["verdict"] == ""
        assert log.schema_version == SCHEMA_VERSION
    if engine == "sqlite":
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_writers_lose_nothing(where):
    log = InspectionLog(where())
    ids: list[int] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(50):
            new = log.record(item(f"{k}-{i}.png"))
            with lock:
                ids.append(new)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 400 and log.count() == 400


def test_newer_schema_and_non_databases_are_refused(tmp_path):  # SQLite
    path = tmp_path / "log.sqlite"
    InspectionLog(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(DefectlensError, match="newer than this defectlens"):
        InspectionLog(path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DefectlensError, match="not a usable inspection log"):
        InspectionLog(junk)


def test_image_store_is_content_addressed(tmp_path):
    store = ImageStore(tmp_path / "images")
    a = store.put(b"\x89PNG fake", image_format="PNG")
    assert a == store.put(b"\x89PNG fake", image_format="PNG") and a.endswith(".png")
    assert store.path(a).read_bytes() == b"\x89PNG fake"
    assert store.put(b"other", image_format=None).endswith(".img")


def test_csv_export_defuses_spreadsheet_formulas(where):
    log = InspectionLog(where())
    log.record(item('=HYPERLINK("http://x")'))
    log.record(item("@SUM(A1).png"))
    rows = list(csv.DictReader(io.StringIO("".join(log.iter_csv()))))
    assert [r["client_name"] for r in rows] == ['\'=HYPERLINK("http://x")', "'@SUM(A1).png"]
    assert log.get(1).client_name == '=HYPERLINK("http://x")'  # the log keeps the name as given


def test_a_version_1_log_is_migrated_and_keeps_its_rows(tmp_path):  # SQLite: a file an earlier release wrote
    _MIGRATIONS = sqlite_scripts()

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[1] + "\nPRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO inspections (created_utc, source, client_name, image_sha256, image_bytes, status, prediction) "
        "VALUES ('2026-01-01T00:00:00.000+00:00', 'web', 'old.png', 'aa', 3, 'ok', 'defect')"
    )
    db.commit()
    db.close()
    log = InspectionLog(path)
    assert log.schema_version == SCHEMA_VERSION == 5
    assert (old_station := log.get(1).station) is None, old_station
    old = log.get(1)
    assert (old.client_name, old.prediction, old.warning) == ("old.png", "defect", "")
    new = log.record(item("new.jpg", warning="corrupt JPEG data"))
    assert log.get(new).warning == "corrupt JPEG data"


def test_a_version_2_log_gains_the_gate_columns_and_keeps_its_rows(tmp_path):  # SQLite
    _MIGRATIONS = sqlite_scripts()

    path = tmp_path / "v2.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[1] + _MIGRATIONS[2] + "\nPRAGMA user_version = 2;")
    db.execute(
        "INSERT INTO inspections (created_utc, source, client_name, image_sha256, image_bytes, status, prediction) "
        "VALUES ('2026-01-01T00:00:00.000+00:00', 'web', 'old.png', 'aa', 3, 'ok', 'ok')"
    )
    db.commit()
    db.close()
    with InspectionLog(path) as log:
        assert log.schema_version == SCHEMA_VERSION
        old = log.get(1)
        assert (old.status, old.prediction, old.ood_score, old.gate_flagged) == ("ok", "ok", None, None)
        new = log.record(item("black.png", status="needs_review", prediction=None, probabilities={},
                              defect_probability=None, reason="frame is almost uniform", ood_score=7.25,
                              gate_flagged=True))  # fmt: skip
        got = log.get(new)
        assert (got.status, got.prediction, got.ood_score, got.gate_flagged) == ("needs_review", None, 7.25, True)


def test_needs_review_is_its_own_status_and_never_an_ok_part(where):
    log = InspectionLog(where())
    review = {"status": "needs_review", "prediction": None, "probabilities": {}, "gate_flagged": True}
    ids = log.record_many(
        [
            item("a.png", prediction="ok", gate_flagged=False),
            item("b.png", prediction="ok", gate_flagged=True, reason="frame is noisy"),  # decided, flagged (warn)
            item("c.png", prediction="defect", gate_flagged=False),
            item("black.png", **review, reason="frame is almost uniform", ood_score=9.0),
            item("dark.png", **review, reason="frame is under-exposed"),
            item("junk.png", status="error", prediction=None, probabilities={}, reason="not an image"),
        ]
    )
    tally = log.tally()
    assert (tally.total, tally.decided, tally.needs_review, tally.errors, tally.flagged) == (
        6, {"defect": 1, "ok": 2}, 2, 1, 1
    )  # fmt: skip
    assert log.count(Filters(label="ok")) == 2  # the ok parts: frames not judged are not among them
    assert [i.id for i in log.query(Filters(status="needs_review"))] == [ids[4], ids[3]]
    assert log.tally(Filters(status="needs_review")).decided == {}
    with pytest.raises(DefectlensError, match="no class to confirm"):
        log.set_verdict(ids[3], "confirmed")
    assert log.set_verdict(ids[3], "overridden", label="defect").verdict_label == "defect"
    with pytest.raises(DefectlensError, match="status must be one of ok, needs_review, error, dropped, got 'maybe'"):
        log.record(item("x.png", status="maybe"))
    rows = list(csv.DictReader(io.StringIO("".join(log.iter_csv()))))
    assert (rows[3]["status"], rows[3]["ood_score"], rows[3]["gate_flagged"]) == ("needs_review", "9.0", "1")


def test_station_rows_keep_station_capture_time_and_part_and_dropped_frames_are_not_parts(where):
    log = InspectionLog(where())
    decided = log.record(
        replace(item("p1.png"), station="line-1", captured_utc="2026-12-05T10:00:00.000+00:00", part_id="P-17")
    )
    dropped = log.record(replace(item("p2.png"), status="dropped", prediction=None, reason="queue full (8 frames)"))
    row = log.get(decided)
    assert (row.station, row.captured_utc, row.part_id) == ("line-1", "2026-12-05T10:00:00.000+00:00", "P-17")
    assert log.get(dropped).status == "dropped"
    assert [r.id for r in log.query(Filters(station="line-1"))] == [decided]
    tally = log.tally()
    assert tally.total == 2 and sum(tally.decided.values()) == 1
    header = next(csv.reader(io.StringIO("".join(log.iter_csv()))))
    assert header[-3:] == ["station", "captured_utc", "part_id"]


def test_a_log_the_release_wrote_opens_in_place_with_its_rows_and_verdicts(tmp_path):  # SQLite
    """A schema-5 file written by 0.3.0's store (data/log_0.3.0_schema5.sql, its dump) is read and written as is."""
    path = tmp_path / "release.sqlite"
    db = sqlite3.connect(path)
    db.executescript((Path(__file__).parent / "data" / "log_0.3.0_schema5.sql").read_text())
    db.close()
    with InspectionLog(path) as log:
        assert log.schema_version == SCHEMA_VERSION and log.integrity_check() == "ok"
        a, b, c = (log.get(i) for i in (1, 2, 3))
        assert (a.probabilities, a.gate_flagged, a.ood_score, a.verdict, a.operator) == (
            {"ok": 0.25, "defect": 0.75}, False, 1.5, "confirmed", "ben"
        )  # fmt: skip
        assert (b.status, b.gate_flagged, b.verdict_label) == ("needs_review", True, "defect")
        assert (c.station, c.part_id, c.captured_utc) == ("line-1", "P-1", "2026-12-01T10:00:00.000+00:00")
        assert [(v.verdict, v.label, v.operator) for v in log.verdicts(1)] == [
            ("overridden", "ok", "ana"), ("confirmed", "defect", "ben")
        ]  # fmt: skip
        assert log.tally().total == 3 and log.record(item("d.png")) == 4
        log.set_verdict(4, "confirmed")
        assert [v.id for v in log.verdicts(4)] == [4]  # the history goes on from the release's three
