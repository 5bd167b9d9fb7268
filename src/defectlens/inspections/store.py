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

A client's file name is stored as data only: nothing here turns it into a path.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.inference.predictor import STATUSES

SCHEMA_VERSION = 4
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
}

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


def _csv_cell(value: Any) -> Any:
    """A value for the CSV export; text a spreadsheet would run as a formula (a client file name such as
    ``=HYPERLINK(...)``) gets a leading apostrophe, as OWASP advises against CSV injection."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


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
class Tally:
    """How the matching inspections came out: decisions per class, and the frames not decided, apart.

    Attributes:
        total: every matching row.
        decided: rows with a class (``status="ok"``), per predicted class.
        needs_review: frames the gate sent for review (no class; never among ``decided``).
        errors: inputs that could not be used.
        flagged: decisions the gate flagged but let through (``--gate warn``), also counted in ``decided``.
    """

    total: int
    decided: dict[str, int]
    needs_review: int
    errors: int
    flagged: int

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

    Raises:
        DefectlensError: for a file that is not a SQLite database, or one written by a newer schema.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise DefectlensError(f"{self.path}: not a usable inspection log ({exc})") from None

    def _migrate(self) -> None:
        current = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if current > SCHEMA_VERSION:
            raise DefectlensError(
                f"{self.path}: inspection log schema version {current} is newer than this defectlens "
                f"understands ({SCHEMA_VERSION}); upgrade defectlens"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            # one transaction per step: a crash mid-migration leaves the previous version intact
            try:
                self._db.executescript(
                    f"BEGIN IMMEDIATE;\n{_MIGRATIONS[version]}\nPRAGMA user_version = {version};\nCOMMIT;"
                )
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

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
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for item in items:
                    values = {**asdict(item), "created_utc": now, "probabilities": json.dumps(item.probabilities)}
                    cur = self._db.execute(sql, [values[c] for c in columns])
                    ids.append(int(cur.lastrowid or 0))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return ids

    def set_verdict(
        self, inspection_id: int, verdict: str, *, label: str | None = None, comment: str = "", operator: str = ""
    ) -> Inspection:
        """Record an operator's verdict: ``confirmed`` (the model was right) or ``overridden`` with the true label.

        Raises:
            DefectlensError: for an unknown id or verdict, or an override without a label.
        """
        if verdict not in VERDICTS:
            raise DefectlensError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        if verdict == "overridden" and not label:
            raise DefectlensError("an override needs the label the operator gives the part")
        with self._lock:
            row = self._db.execute("SELECT prediction FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
            if row is None:
                raise DefectlensError(f"no inspection with id {inspection_id}")
            if verdict == "confirmed" and row["prediction"] is None:
                raise DefectlensError(
                    f"inspection {inspection_id} has no class to confirm (not judged): override it with the "
                    "part's class"
                )
            final = row["prediction"] if verdict == "confirmed" else label
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE inspections SET verdict = ?, verdict_label = ?, verdict_utc = ?, comment = ?, operator = ? "
                "WHERE id = ?",
                (verdict, final, utc_now(), comment or None, operator or None, inspection_id),
            )
            self._db.execute("COMMIT")
        found = self.get(inspection_id)
        assert found is not None
        return found

    def get(self, inspection_id: int) -> Inspection | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
        return Inspection.from_row(row) if row is not None else None

    def query(self, filters: Filters | None = None, *, limit: int = 50, offset: int = 0) -> list[Inspection]:
        """The newest inspections first, ``limit`` from ``offset``."""
        where, params = (filters or Filters()).where()
        sql = f"SELECT * FROM inspections{where} ORDER BY id DESC LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._db.execute(sql, [*params, int(limit), int(offset)]).fetchall()
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
