"""The inspection log's rows, the same on every engine: what a surface records (:class:`NewInspection`), a row
(:class:`Inspection`), a verdict (:class:`VerdictEntry`), counts (:class:`Tally`),
and the columns in the order the CSV export writes them.

A row's ``status`` is the Predictor's outcome (:data:`STATUSES`): ``ok`` (a decision: ``prediction`` is the
class), ``needs_review`` (the gate would not let the model judge the frame: no class, ``reason`` says why,
``ood_score`` and ``gate_flagged`` keep its finding) or ``error`` (unusable input), and ``dropped`` for a
station's frame that never reached the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from defectlens.inference.predictor import STATUSES

#: The largest id (and offset) the log's integers hold (SQLite's, PostgreSQL's BIGINT); a larger one names no row.
MAX_ID = 2**63 - 1
#: A row's status: the Predictor's outcomes, and ``dropped`` (a station's frame that never reached the model:
#: the queue was full or the station stopped; ``reason`` says which). Dropped rows are never counted as parts.
LOG_STATUSES = (*STATUSES, "dropped")
#: An operator's verdict on a decision: the model was right, or the part is in fact ``verdict_label``.
VERDICTS = ("confirmed", "overridden")

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
    def from_row(cls, row: Mapping[str, Any]) -> Inspection:
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
