"""The inspection log: one row per inspected image, the operator's verdict beside it, on SQLite or PostgreSQL.

:class:`InspectionLog` is the one API every surface writes through (the web service, the line station, the
desktop Inspector); where it lives is one location (:func:`~defectlens.inspections.engine.parse_location`): a
SQLite file (:mod:`~defectlens.inspections.sqlite_engine`, the default) or a PostgreSQL database
(:mod:`~defectlens.inspections.postgres_engine`, many writers on many machines). The statements here are the
same on both engines.

Durability: :meth:`InspectionLog.record` returns only after its transaction is committed, so an id a caller has
been given survives a crash or ``kill -9``; group commit is :meth:`InspectionLog.record_many` (many rows, one
transaction). Every write goes through the engine's one transaction helper, which rolls back whole on any
failure (a failed ``COMMIT`` included) and leaves the log ready for the next write.

Counts of parts per class (:meth:`InspectionLog.tally`, the ``label`` filter) are of decisions only, so a frame
nobody judged is never counted as a good part. An operator's verdicts are kept as an append-only history (table
``verdicts``, schema 5): a new verdict never replaces the previous one; the newest is also the row's ``verdict`` /
``verdict_label`` for queries. Overriding a decision to the class it already has is refused (that is a
confirmation).

A client's file name is stored as data only: nothing here turns it into a path.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from defectlens.core.errors import DefectlensError
from defectlens.core.text import csv_cell as _csv_cell  # one rule for every CSV a person opens
from defectlens.inspections.engine import DatabaseURL, Location, parse_location
from defectlens.inspections.migrations import SCHEMA_VERSION
from defectlens.inspections.postgres_engine import PostgresEngine
from defectlens.inspections.schema import (
    COLUMNS,
    LOG_STATUSES,
    MAX_ID,
    VERDICTS,
    Inspection,
    NewInspection,
    Tally,
    VerdictEntry,
    utc_now,
)
from defectlens.inspections.sqlite_engine import SQLiteEngine

__all__ = [
    "COLUMNS",
    "LOG_STATUSES",
    "MAX_ID",
    "SCHEMA_VERSION",
    "VERDICTS",
    "Filters",
    "Inspection",
    "InspectionLog",
    "NewInspection",
    "Tally",
    "VerdictEntry",
    "utc_now",
]

#: The columns a new row writes (the log adds ``id``; the verdict columns start empty).
_SET_LATER = ("id", "verdict", "verdict_label", "verdict_utc", "comment", "operator")
INSERTED = tuple(c for c in COLUMNS if c not in _SET_LATER)

# The log's statements, the same on both engines: ``?`` placeholders, ``{where}`` a :class:`Filters` clause.
_INSERT = f"INSERT INTO inspections ({', '.join(INSERTED)}) VALUES ({', '.join('?' * len(INSERTED))})"
_PREDICTION = "SELECT prediction FROM inspections WHERE id = ?"
_SET_VERDICT = (
    "UPDATE inspections SET verdict = ?, verdict_label = ?, verdict_utc = ?, comment = ?, operator = ? WHERE id = ?"
)
_ADD_VERDICT = (
    "INSERT INTO verdicts (inspection_id, verdict, label, operator, comment, created_utc) VALUES (?, ?, ?, ?, ?, ?)"
)
_VERDICTS = "SELECT * FROM verdicts WHERE inspection_id = ? ORDER BY id"
_ONE = "SELECT * FROM inspections WHERE id = ?"
_PAGE = "SELECT * FROM inspections{where} ORDER BY id DESC LIMIT ? OFFSET ?"
_COUNT = "SELECT COUNT(*) AS n FROM inspections{where}"
_TALLY = (
    "SELECT status, prediction, COUNT(*) AS n, SUM(CASE WHEN gate_flagged = 1 THEN 1 ELSE 0 END) AS flagged "
    "FROM inspections{where} GROUP BY status, prediction"
)
_CHUNK = "SELECT * FROM inspections{where} ORDER BY id LIMIT ?"
_AND_AFTER, _WHERE_AFTER = " AND id > ?", " WHERE id > ?"


class Session(Protocol):
    """Statements inside one engine transaction (``?`` placeholders on both engines)."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]: ...

    def insert(self, sql: str, params: Sequence[Any]) -> int: ...

    def insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]: ...

    def run(self, sql: str, params: Sequence[Any]) -> None: ...


class Engine(Protocol):
    """What :class:`InspectionLog` needs of an engine (:class:`SQLiteEngine`, :class:`PostgresEngine`)."""

    def write(self) -> AbstractContextManager[Session]: ...

    def read(self) -> AbstractContextManager[Session]: ...

    def schema_version(self) -> int: ...

    def integrity_check(self) -> str: ...

    def close(self) -> None: ...


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
    """The shared inspection log (thread-safe), on the engine its location names.

    Args:
        location: a SQLite file (a path or ``sqlite:///PATH``; created with its folder when missing) or a
            PostgreSQL database (``postgresql://USER:PASSWORD@HOST:PORT/DB``, the ``[postgres]`` extra).
        timeout: seconds a write waits for another writer's lock before it fails ("database is locked"); on
            PostgreSQL also how long to wait for the server to answer.

    Raises:
        DefectlensError: for a file that is not a SQLite database, a database that cannot be reached, one written
            by a newer schema, or a PostgreSQL URL without the ``[postgres]`` extra.
    """

    def __init__(self, location: str | Path | DatabaseURL, *, timeout: float = 30.0):
        #: where the log is: the file, or the database URL (prints with its password masked)
        self.path: Location = parse_location(location)
        self._engine: Engine
        if isinstance(self.path, DatabaseURL):
            self._engine = PostgresEngine(self.path, timeout=timeout)
        else:
            self._engine = SQLiteEngine(self.path, timeout=timeout)

    @property
    def schema_version(self) -> int:
        return self._engine.schema_version()

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
        rows = []
        for item in items:
            values = {**asdict(item), "created_utc": now, "probabilities": json.dumps(item.probabilities)}
            if item.gate_flagged is not None:
                values["gate_flagged"] = int(item.gate_flagged)  # an INTEGER column on both engines
            rows.append([values[c] for c in INSERTED])
        with self._engine.write() as db:
            return db.insert_many(_INSERT, rows)

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
        with self._engine.write() as db:
            rows = db.rows(_PREDICTION, (inspection_id,))
            final = _verdict_label(inspection_id, rows[0] if rows else None, verdict, label)
            now = utc_now()
            db.run(_SET_VERDICT, (verdict, final, now, comment or None, operator or None, inspection_id))
            db.insert(_ADD_VERDICT, (inspection_id, verdict, final, operator or None, comment or None, now))
        found = self.get(inspection_id)
        assert found is not None
        return found

    def verdicts(self, inspection_id: int) -> list[VerdictEntry]:
        """Every verdict given on ``inspection_id``, oldest first (empty for none, or an unknown id)."""
        if not _fits(inspection_id):
            return []
        with self._engine.read() as db:
            rows = db.rows(_VERDICTS, (inspection_id,))
        return [VerdictEntry(**dict(r)) for r in rows]

    def get(self, inspection_id: int) -> Inspection | None:
        if not _fits(inspection_id):
            return None
        with self._engine.read() as db:
            rows = db.rows(_ONE, (inspection_id,))
        return Inspection.from_row(rows[0]) if rows else None

    def query(self, filters: Filters | None = None, *, limit: int = 50, offset: int = 0) -> list[Inspection]:
        """The newest inspections first, ``limit`` from ``offset``."""
        where, params = (filters or Filters()).where()
        if not _fits(offset):
            return []  # past any row the log can hold
        # a negative limit is no limit and a negative offset starts at the newest (SQLite's reading, on both engines)
        page = MAX_ID if limit < 0 else min(int(limit), MAX_ID)
        with self._engine.read() as db:
            rows = db.rows(_PAGE.format(where=where), [*params, page, max(int(offset), 0)])
        return [Inspection.from_row(r) for r in rows]

    def count(self, filters: Filters | None = None) -> int:
        where, params = (filters or Filters()).where()
        with self._engine.read() as db:
            (row,) = db.rows(_COUNT.format(where=where), params)
        return int(row["n"])

    def tally(self, filters: Filters | None = None) -> Tally:
        """Counts of the matching inspections by outcome (see :class:`Tally`)."""
        where, params = (filters or Filters()).where()
        with self._engine.read() as db:
            rows = [
                (r["status"], r["prediction"], r["n"], r["flagged"])
                for r in db.rows(_TALLY.format(where=where), params)
            ]
        by_status: dict[str, int] = {}
        decided: dict[str, int] = {}
        flagged = 0
        for status, prediction, n, n_flagged in rows:
            by_status[status] = by_status.get(status, 0) + n
            if status == "ok" and prediction is not None:
                decided[prediction] = n  # GROUP BY status, prediction: one "ok" group per class
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
        sql = _CHUNK.format(where=where + _AND_AFTER if where else _WHERE_AFTER)
        last = 0
        while True:
            with self._engine.read() as db:
                rows = db.rows(sql, [*params, last, chunk])
            if not rows:
                return
            buf = io.StringIO()
            writer = csv.writer(buf)
            for row in rows:
                writer.writerow([_csv_cell(row[c]) for c in COLUMNS])
            last = int(rows[-1]["id"])
            yield buf.getvalue()

    def integrity_check(self) -> str:
        """``"ok"`` for a sound log (SQLite's ``PRAGMA integrity_check``; on PostgreSQL, the tables answer at the
        schema this defectlens writes)."""
        return self._engine.integrity_check()

    def close(self) -> None:
        self._engine.close()

    def __enter__(self) -> InspectionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fits(n: int) -> bool:
    """True when ``n`` is an integer the log can hold (a larger id or offset names no row: no OverflowError)."""
    return -MAX_ID - 1 <= n <= MAX_ID


def _verdict_label(inspection_id: int, row: Mapping[str, Any] | None, verdict: str, label: str | None) -> str | None:
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
