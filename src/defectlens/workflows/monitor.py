"""The drift watch after the fact: an inspection log's rows replayed, oldest first, through
:class:`~defectlens.inference.drift.DriftWatch` (``defectlens monitor LOG``).

A log row keeps the decision (status, class, whether the gate flagged the frame), the gate's OOD score and the
operator's verdict, not the frame's image statistics: those checks are reported unavailable. The reference is
the bundle's (``model``: its drift reference, or what an older bundle's profile holds) and only that model's
rows are replayed; without a bundle it is the log's own first ``baseline`` rows of its newest model (its OOD
score bins, decision shares and verdict agreement), and the windows after them are compared with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.bundle import read_bundle
from defectlens.core.errors import DefectlensError
from defectlens.core.profile import STATS
from defectlens.inference.drift import (
    NEEDS_REVIEW,
    OOD,
    DriftConfig,
    DriftWatch,
    Reference,
    outcome_of,
    ref_bins,
    reference_of,
)
from defectlens.inspections import InspectionLog
from defectlens.inspections.schema import Inspection

_NO_STATS = "image statistics (the log does not keep them: watch them live, in serve or line)"


@dataclass
class MonitorReport:
    """What a replay found (``to_dict`` for JSON)."""

    log: str
    model_id: str | None
    reference: str
    rows: int
    replayed: int
    skipped: dict[str, int]
    events: list[dict[str, Any]]
    peaks: dict[str, float]
    final: dict[str, Any]
    unavailable: list[str]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def alarms(self) -> int:
        return sum(1 for e in self.events if e["kind"] == "drift_alarm")

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "alarms": self.alarms}


def _rows(log_path: Path) -> list[Inspection]:
    if not log_path.is_file():
        raise DefectlensError(f"inspection log {log_path} does not exist")
    with InspectionLog(log_path) as log:
        return list(reversed(log.query(limit=-1)))  # the log lists newest first


def _verdict(row: Inspection) -> bool | None:
    """Whether the operator agreed with the model (None: no verdict, or no class to agree with)."""
    if row.verdict not in ("confirmed", "overridden") or row.prediction is None:
        return None
    return row.verdict_label == row.prediction


def _outcome(row: Inspection) -> str | None:
    return outcome_of(row.status, row.prediction, row.gate_flagged)


def baseline_reference(rows: list[Inspection]) -> Reference:
    """A reference from the log's own rows: their OOD scores' decile bins, decision shares and verdict agreement."""
    scores = np.asarray([r.ood_score for r in rows if r.ood_score is not None], np.float64)
    bins = {OOD: ref_bins(scores)} if len(scores) else {}
    outcomes = [o for o in map(_outcome, rows) if o is not None]
    names = sorted({*outcomes, NEEDS_REVIEW})
    decisions = {n: outcomes.count(n) / len(outcomes) for n in names} if outcomes else {}
    verdicts = [v for v in map(_verdict, rows) if v is not None]
    missing = [] if len(scores) else ["ood score (no row of the baseline has one)"]
    return Reference(
        bins=bins,
        decisions=decisions,
        accuracy=sum(verdicts) / len(verdicts) if verdicts else None,
        images=len(outcomes),
        unavailable=(*missing, *([] if verdicts else ["operator agreement (no verdict in the baseline)"])),
    )


def monitor_log(
    log_path: str | Path, *, model: str | Path | None = None, baseline: int | None = None, config: DriftConfig
) -> MonitorReport:
    """Replay ``log_path``'s rows through a drift watch (see the module docstring).

    Raises:
        DefectlensError: a log that does not exist, a bad bundle, or a log with no row of the model.
    """
    path = Path(log_path)
    rows = _rows(path)
    bundle = read_bundle(model) if model is not None else None
    model_id = bundle.model_id if bundle is not None else (rows[-1].model_id if rows else None)
    mine = [r for r in rows if r.model_id == model_id]
    if not mine:
        raise DefectlensError(f"inspection log {path} has no row of model {model_id} ({len(rows)} rows)")
    skipped = {"other models": len(rows) - len(mine)}
    if bundle is not None:
        metrics = bundle.meta.get("metrics") or {}
        accuracy = metrics.get("accuracy") if isinstance(metrics.get("accuracy"), float) else None
        reference = reference_of(bundle.profile, accuracy=accuracy, validation_images=int(metrics.get("n") or 0))
        source = f"bundle {Path(str(model)).name}"
    else:
        n = baseline or config.window
        if len(mine) <= n:
            raise DefectlensError(
                f"inspection log {path}: {len(mine)} rows of model {model_id}, none after a baseline of {n}"
            )
        reference, mine = baseline_reference(mine[:n]), mine[n:]
        skipped["baseline"] = n
        source = f"the log's first {n} rows of this model"
    no_stats = {k: b for k, b in reference.bins.items() if k not in STATS}
    reference = Reference(no_stats, reference.decisions, reference.accuracy, reference.images, reference.unavailable)
    report = _replay(mine, reference, model_id, config)
    return MonitorReport(log=str(path), model_id=model_id, reference=source, rows=len(rows), skipped=skipped, **report)


def _replay(mine: list[Inspection], reference: Reference, model_id: str | None, config: DriftConfig) -> dict[str, Any]:
    watch = DriftWatch(reference, model_id=model_id, config=config)
    events: list[dict[str, Any]] = []
    peaks: dict[str, float] = {}
    for row in mine:
        event = watch.observe(stats=None, ood_score=row.ood_score, outcome=_outcome(row))
        agreed = _verdict(row)
        if agreed is not None:
            event = watch.verdict(agreed=agreed) or event
        for c in watch.status().checks:
            peaks[c.name] = round(max(peaks.get(c.name, 0.0), c.severity), 4)
        if event is not None:
            events.append({"kind": event.kind, "inspection_id": row.id, "utc": row.created_utc, "text": event.text})
    return {
        "replayed": len(mine),
        "events": events,
        "peaks": dict(sorted(peaks.items(), key=lambda kv: -kv[1])),
        "final": watch.status().to_dict(),
        "unavailable": [_NO_STATS, *reference.unavailable],
        "config": dict(config.__dict__),
    }
