"""The inspection log in SQLite: one row per inspected image, the operator's verdict beside it.

Durability: WAL journal, ``synchronous=FULL``, and :meth:`InspectionLog.record` returns only after
its transaction is committed, so an id a caller has been given survives a crash or ``kill -9``. One
connection behind a lock is the single writer (a web service's threads and the inspector's
background scorer share it). The schema carries a version (``PRAGMA user_version``) and is migrated
forward on open; a file written by a newer defectlens is refused rather than damaged.

A row's ``status`` is the Predictor's outcome (:data:`STATUSES`): ``ok`` (a decision: ``prediction`` is
the class), ``needs_review`` (the gate would not let the model judge the frame: no class, ``reason`` says
why, ``ood_score`` and ``gate_flagged`` keep its finding) or ``error`` (unusable input). Counts of parts per
class (:meth:`InspectionLog.tally`, the ``label`` filter) are of decisions only, so a frame nobody judged
is never counted as a good part.

Every write goes through one transaction helper (:meth:`InspectionLog._transaction`): ``BEGIN IMMEDIATE``,
``COMMIT``, and ``ROLLBACK`` on any failure, a failed ``COMMIT`` included, so a write that fails (a locked or
full database, a read-only file, a constraint) leaves the shared connection ready for the next one.

An operator's verdicts are kept as an append-only history (table ``verdicts``, schema 5): a new verdict never
replaces the previous one; the newest is also the row's ``verdict`` / ``verdict_label`` for queries. Overriding
a decision to the class it already has is refused (that is a confirmation).

A client's file name is stored as data only: nothing here turns it into a path.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.core.text import csv_cell as _csv_cell  # one rule for every CSV a person opens
from defectlens.inference.predictor import STATUSES

SCHEMA_VERSION = 5
#: The largest id (and offset) SQLite's integers hold; a larger one names no row.
MAX_ID = 2**63 - 1
#: A row's status: the Predictor's outcomes, and ``dropped`` (a station's frame that never reached the model:
#: the queue was full or the station stopped; ``reason`` says which). Dropped rows are never counted as parts.
LOG_STATUSES = (*STATUSES, "dropped")
#: An operator's verdict on a decision: the model was right, or the part is in fact ``verdict_label``.
VERDICTS = ("confirmed", "overridden")

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE inspections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_utc TEXT NOT NULL,
        source TEXT NOT NULL,
        client_name TEXT NOT NULL,
        image_sha256 TEXT NOT NULL,
        image_bytes INTEGER NOT NULL,
        width INTEGER,
        height INTEGER,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        prediction TEXT,
        probabilities TEXT,
        defect_probability REAL,
        threshold REAL,
        temperature REAL,
        model_id TEXT,
        latency_ms REAL,
        image_path TEXT,
        verdict TEXT,
        verdict_label TEXT,
        verdict_utc TEXT,
        comment TEXT,
        operator TEXT
    );
    CREATE INDEX inspections_created ON inspections (created_utc);
    CREATE INDEX inspections_prediction ON inspections (prediction);
    CREATE INDEX inspections_model ON inspections (model_id);
    """,
    # 2: what decoding noticed but did not stop for (corrupt JPEG data, bad EXIF...)
    2: "ALTER TABLE inspections ADD COLUMN warning TEXT NOT NULL DEFAULT '';",
    # 3: the gate's finding (#26): the OOD score, and whether the frame was flagged (NULL: not gated; rows
    # logged before have no finding); status gains the value 'needs_review' (the column has no CHECK)
    3: """
    ALTER TABLE inspections ADD COLUMN ood_score REAL;
    ALTER TABLE inspections ADD COLUMN gate_flagged INTEGER;
    CREATE INDEX inspections_status ON inspections (status);
    """,
    # 4: a line station's frames (#27): which station, when the frame was captured (created_utc is when the
    # row was decided), the part or trigger id where the source has one; status gains 'dropped'
    4: """
    ALTER TABLE inspections ADD COLUMN station TEXT;
    ALTER TABLE inspections ADD COLUMN captured_utc TEXT;
    ALTER TABLE inspections ADD COLUMN part_id TEXT;
    CREATE INDEX inspections_station ON inspections (station);
    """,
    # 5: the verdict history (#33): every verdict appended, never replaced; the verdicts given before become
    # each row's first entry. The triggers keep the history append-only.
    5: """
    CREATE TABLE verdicts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        inspection_id INTEGER NOT NULL REFERENCES inspections (id),
        verdict TEXT NOT NULL,
        label TEXT,
        operator TEXT,
        comment TEXT,
        created_utc TEXT NOT NULL
    );
    CREATE INDEX verdicts_inspection ON verdicts (inspection_id);
    INSERT INTO verdicts (inspection_id, verdict, label, operator, comment, created_utc)
        SELECT id, verdict, verdict_label, operator, comment, COALESCE(verdict_utc, created_utc)
        FROM inspections WHERE verdict IS NOT NULL ORDER BY id;
    CREATE TRIGGER verdicts_no_update BEFORE UPDATE ON verdicts
        BEGIN SELECT RAISE(ABORT, 'the verdict history is append-only'); END;
    CREATE TRIGGER verdicts_no_delete BEFORE DELETE ON verdicts
        BEGIN SELECT RAISE(ABORT, 'the verdict history is append-only'); END;
    """,
}


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of a migration script, one at a time (a trigger's body stays whole)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()  # incomplete: SQLite names the error


#: Columns in the order the CSV export writes them.
COLUMNS = (
    "id",
    "created_utc",
    "source",
    "client_name",
    "image_sha256",
    "image_bytes",
    "width",
    "height",
    "status",
    "reason",
    "warning",
    "ood_score",
    "gate_flagged",
    "prediction",
    "probabilities",
    "defect_probability",
    "threshold",
    "temperature",
    "model_id",
    "latency_ms",
    "image_path",
    "verdict",
    "verdict_label",
    "verdict_utc",
    "comment",
    "operator",
    "station",
    "captured_utc",
    "part_id",
)


def utc_now() -> str:
    """The current UTC time as ISO 8601 with milliseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class NewInspection:
    """What a surface records about one inspected image (the log adds id and time)."""

    source: str  # "web", "api", "inspector"
    client_name: str
    image_sha256: str
    image_bytes: int
    status: str = "ok"  # one of STATUSES; "needs_review" rows have no prediction
    reason: str = ""  # why not judged (error, needs_review), or the gate's flag on a decision (warn mode)
    warning: str = ""
    ood_score: float | None = None
    gate_flagged: bool | None = None  # None: the frame was not gated (gate off, or a model without a profile)
    prediction: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    defect_probability: float | None = None
    threshold: float | None = None
    temperature: float | None = None
    model_id: str | None = None
    latency_ms: float | None = None
    width: int | None = None
    height: int | None = None
    image_path: str | None = None
    station: str | None = None  # a line station's name (None: the service, the Inspector)
    captured_utc: str | None = None  # when the source captured the frame (stations)
    part_id: str | None = None  # the part or trigger id, where the source has one


@dataclass(frozen=True)
class Inspection:
    """One row of the log."""

    id: int
    created_utc: str
    source: str
    client_name: str
    image_sha256: str
    image_bytes: int
    width: int | None
    height: int | None
    status: str
    reason: str
    warning: str
    ood_score: float | None
    gate_flagged: bool | None
    prediction: str | None
    probabilities: dict[str, float]
    defect_probability: float | None
    threshold: float | None
    temperature: float | None
    model_id: str | None
    latency_ms: float | None
    image_path: str | None
    verdict: str | None
    verdict_label: str | None
    verdict_utc: str | None
    comment: str | None
    operator: str | None
    station: str | None = None
    captured_utc: str | None = None
    part_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Inspection:
        d = dict(row)
        d["probabilities"] = json.loads(d["probabilities"]) if d["probabilities"] else {}
        d["gate_flagged"] = None if d["gate_flagged"] is None else bool(d["gate_flagged"])
        return cls(**d)


@dataclass(frozen=True)
class VerdictEntry:
    """One verdict in an inspection's history (append-only; the newest is the row's current verdict).

    Attributes:
        label: the part's class the verdict gives (the prediction for ``confirmed``).
        created_utc: when it was recorded (ISO 8601 UTC).
    """

    id: int
    inspection_id: int
    verdict: str
    label: str | None
    operator: str | None
    comment: str | None
    created_utc: str


@dataclass(frozen=True)
class Tally:
    """How the matching inspections came out: decisions per class, and the frames not decided, apart.

    Attributes:
        total: every matching row.
        decided: rows with a class (``status="ok"``), per predicted class.
        needs_review: frames the gate sent for review (no class; never among ``decided``).
        errors: inputs that could not be used.
        flagged: decisions the gate flagged but let through (``--gate warn``), also counted in ``decided``.
        dropped: a line station's frames that never reached the model (queue full, station stopping).
    """

    total: int
    decided: dict[str, int]
    needs_review: int
    errors: int
    flagged: int
    dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Filters:
    """Which inspections a query returns (every field optional; times are ISO 8601 UTC strings)."""

    label: str | None = None  # the model's prediction
    verdict: str | None = None  # "confirmed", "overridden" or "none" (not yet reviewed)
    since: str | None = None
    until: str | None = None
    model_id: str | None = None
    status: str | None = None
    station: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = [], []
        pairs = (
            ("prediction", self.label),
            ("model_id", self.model_id),
            ("status", self.status),
            ("station", self.station),
        )
        for column, value in pairs:
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.verdict == "none":
            clauses.append("verdict IS NULL")
        elif self.verdict is not None:
            clauses.append("verdict = ?")
            params.append(self.verdict)
        if self.since is not None:
            clauses.append("created_utc >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("created_utc <= ?")
            params.append(self.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class InspectionLog:
    """The shared inspection log (thread-safe; one connection, one writer).

    Args:
        path: the SQLite file (created with its folder when missing).
        timeout: seconds a write waits for another process's lock before it fails ("database is locked").

    Raises:
        DefectlensError: for a file that is not a SQLite database, or one written by a newer schema.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0):
        self.path = Path(path)
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
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write: under the lock, ``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on any exception,
        a failed ``COMMIT`` included (a deferred constraint, an I/O error), so the shared connection is never
        left inside a transaction and the next write starts clean."""
        with self._lock:
            self._rollback()  # only a failed rollback could have left one open; never build on it
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

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
        for version in range(current + 1, SCHEMA_VERSION + 1):
            # one transaction per step: a failure mid-migration leaves the previous version intact
            with self._transaction() as db:
                for statement in _statements(_MIGRATIONS[version]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def record(self, item: NewInspection) -> int:
        """Insert one inspection; returns its id once the row is committed to disk."""
        return self.record_many([item])[0]

    def record_many(self, items: Sequence[NewInspection]) -> list[int]:
        """Insert several inspections in one transaction; returns their ids once committed."""
        for item in items:
            if item.status not in LOG_STATUSES:
                choices = ", ".join(LOG_STATUSES)
                raise DefectlensError(f"{item.client_name}: status must be one of {choices}, got {item.status!r}")
        now = utc_now()
        columns = [
            c for c in COLUMNS if c not in ("id", "verdict", "verdict_label", "verdict_utc", "comment", "operator")
        ]
        sql = f"INSERT INTO inspections ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        ids = []
        with self._transaction() as db:
            for item in items:
                values = {**asdict(item), "created_utc": now, "probabilities": json.dumps(item.probabilities)}
                cur = db.execute(sql, [values[c] for c in columns])
                ids.append(int(cur.lastrowid or 0))
        return ids

    def set_verdict(
        self, inspection_id: int, verdict: str, *, label: str | None = None, comment: str = "", operator: str = ""
    ) -> Inspection:
        """Record an operator's verdict: ``confirmed`` (the model was right) or ``overridden`` with the true label.

        The verdict is appended to the inspection's history (:meth:`verdicts`) and becomes its current one.

        Raises:
            DefectlensError: for an unknown id or verdict, an override without a label, or an override to the
                class the inspection already has (confirm it instead).
        """
        if verdict not in VERDICTS:
            raise DefectlensError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        if verdict == "overridden" and not label:
            raise DefectlensError("an override needs the label the operator gives the part")
        if not _fits(inspection_id):
            raise DefectlensError(f"no inspection with id {inspection_id}")
        with self._transaction() as db:
            row = db.execute("SELECT prediction FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
            final = _verdict_label(inspection_id, row, verdict, label)
            now = utc_now()
            db.execute(
                "UPDATE inspections SET verdict = ?, verdict_label = ?, verdict_utc = ?, comment = ?, operator = ? "
                "WHERE id = ?",
                (verdict, final, now, comment or None, operator or None, inspection_id),
            )
            db.execute(
                "INSERT INTO verdicts (inspection_id, verdict, label, operator, comment, created_utc) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (inspection_id, verdict, final, operator or None, comment or None, now),
            )
        found = self.get(inspection_id)
        assert found is not None
        return found

    def verdicts(self, inspection_id: int) -> list[VerdictEntry]:
        """Every verdict given on ``inspection_id``, oldest first (empty for none, or an unknown id)."""
        if not _fits(inspection_id):
            return []
        sql = "SELECT * FROM verdicts WHERE inspection_id = ? ORDER BY id"
        with self._lock:
            rows = self._db.execute(sql, (inspection_id,)).fetchall()
        return [VerdictEntry(**dict(r)) for r in rows]

    def get(self, inspection_id: int) -> Inspection | None:
        if not _fits(inspection_id):
            return None
        with self._lock:
            row = self._db.execute("SELECT * FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
        return Inspection.from_row(row) if row is not None else None

    def query(self, filters: Filters | None = None, *, limit: int = 50, offset: int = 0) -> list[Inspection]:
        """The newest inspections first, ``limit`` from ``offset``."""
        where, params = (filters or Filters()).where()
        sql = f"SELECT * FROM inspections{where} ORDER BY id DESC LIMIT ? OFFSET ?"
        if not _fits(offset):
            return []  # past any row SQLite can hold
        with self._lock:
            rows = self._db.execute(sql, [*params, min(int(limit), MAX_ID), int(offset)]).fetchall()
        return [Inspection.from_row(r) for r in rows]

    def count(self, filters: Filters | None = None) -> int:
        where, params = (filters or Filters()).where()
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM inspections{where}", params).fetchone()[0])

    def tally(self, filters: Filters | None = None) -> Tally:
        """Counts of the matching inspections by outcome (see :class:`Tally`)."""
        where, params = (filters or Filters()).where()
        sql = (
            f"SELECT status, prediction, COUNT(*), SUM(gate_flagged = 1) FROM inspections{where} "
            "GROUP BY status, prediction"
        )
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        by_status: dict[str, int] = {}
        decided: dict[str, int] = {}
        flagged = 0
        for status, prediction, n, n_flagged in rows:
            by_status[status] = by_status.get(status, 0) + n
            if status == "ok" and prediction is not None:
                decided[prediction] = decided.get(prediction, 0) + n
                flagged += int(n_flagged or 0)
        return Tally(
            total=sum(by_status.values()),
            decided=dict(sorted(decided.items())),
            needs_review=by_status.get("needs_review", 0),
            errors=by_status.get("error", 0),
            flagged=flagged,
            dropped=by_status.get("dropped", 0),
        )

    def iter_csv(self, filters: Filters | None = None, *, chunk: int = 500) -> Iterator[str]:
        """The matching inspections as CSV text, header first, oldest first, ``chunk`` rows per piece."""
        where, params = (filters or Filters()).where()
        buf = io.StringIO()
        csv.writer(buf).writerow(COLUMNS)
        yield buf.getvalue()
        last = 0
        while True:
            sql = f"SELECT * FROM inspections{where}{' AND' if where else ' WHERE'} id > ? ORDER BY id LIMIT ?"
            with self._lock:
                rows = self._db.execute(sql, [*params, last, chunk]).fetchall()
            if not rows:
                return
            buf = io.StringIO()
            writer = csv.writer(buf)
            for row in rows:
                writer.writerow([_csv_cell(row[c]) for c in COLUMNS])
            last = int(rows[-1]["id"])
            yield buf.getvalue()

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` (``"ok"`` for a sound file)."""
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> InspectionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fits(n: int) -> bool:
    """True when ``n`` is an integer SQLite can hold (a larger id or offset names no row: no OverflowError)."""
    return -MAX_ID - 1 <= n <= MAX_ID


def _verdict_label(inspection_id: int, row: sqlite3.Row | None, verdict: str, label: str | None) -> str | None:
    """The class a verdict gives the part, or the reason it cannot be recorded on ``row``."""
    if row is None:
        raise DefectlensError(f"no inspection with id {inspection_id}")
    prediction = row["prediction"]
    if verdict == "confirmed":
        if prediction is None:
            raise DefectlensError(
                f"inspection {inspection_id} has no class to confirm (not judged): override it with the part's class"
            )
        return str(prediction)
    if label == prediction:
        raise DefectlensError(
            f"inspection {inspection_id} is already decided {label!r}: confirm it instead of overriding it to the "
            "same class"
        )
    return label
