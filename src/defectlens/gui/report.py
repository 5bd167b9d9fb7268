"""The inspector's records: operator verdicts into the shared inspection log, and the batch export.

A verdict goes on the image's row in the same :class:`InspectionLog` the web service writes (one row per
image, by SHA-256, and model: a row logged before, by the inspector or the service, is reused), recording
the inspection first (``source="inspector"``, the decision at the operator's current threshold) when the
log has none; every verdict is appended to that row's history. A frame the gate sent for review (no
class) is recorded as ``needs_review`` with the gate's reasons and score; the operator reviews it by
overriding it with the part's class (there is nothing to confirm). The export is a CSV (file, ground
truth, prediction, status, every class probability, threshold, verdict) and a JSON summary (counts, with
frames not judged apart, false-negative and false-positive lists, metrics at the current threshold).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from defectlens.core.decision import defect_probability
from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec
from defectlens.gui.session import Item, Session
from defectlens.inspections import Inspection, InspectionLog, NewInspection

#: The figures of :func:`compute_metrics` the summary keeps.
SUMMARY_METRICS = (
    "n",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "tp",
    "fp",
    "fn",
    "tn",
    "defect_recall",
    "false_alarm_rate",
    "expected_cost",
    "cost_fn",
    "cost_fp",
)


@dataclass(frozen=True)
class PendingVerdict:
    """A verdict read off the window, ready to be written by the log's thread (:func:`write_verdict`).

    Attributes:
        index: the image's place in the batch.
        inspection: the row to record when the log holds none for this image and model yet.
        label: the class the operator gives the part (the shown decision for a confirmation).
        inspection_id: the row the window already knows for this image, if any.
    """

    index: int
    inspection: NewInspection
    label: str
    comment: str
    operator: str
    inspection_id: int | None


def prepare_verdict(
    session: Session,
    spec: ModelSpec,
    model_id: str | None,
    index: int,
    verdict: str,
    *,
    label: str | None = None,
    comment: str = "",
    operator: str = "",
) -> PendingVerdict:
    """Check a verdict on image ``index`` and read what its log row needs (on the window's thread: the
    session is not shared); the write itself is :func:`write_verdict`.

    Raises:
        DefectlensError: for an image without a prediction, an override to an unknown class, or an image
            that cannot be read any more.
    """
    view = session.view(index)
    item = view.item
    if item.refused and verdict == "confirmed":
        raise DefectlensError(
            f"{item.path.name}: not judged (needs review: {item.review}); nothing to confirm: override it with "
            "the part's class"
        )
    if view.prediction is None and not item.refused:
        raise DefectlensError(f"{item.path.name}: no prediction to judge ({item.error or 'not scored yet'})")
    if verdict == "overridden" and label not in session.class_names:
        raise DefectlensError(f"override label must be one of {', '.join(session.class_names)}, got {label!r}")
    threshold = session.threshold if session.uses_threshold else None
    try:
        new = _inspection(session, spec, model_id, index, threshold)
    except OSError as exc:
        raise DefectlensError(
            f"verdict NOT saved: {item.path} cannot be read any more ({exc.strerror or exc})"
        ) from None
    final = view.prediction if verdict == "confirmed" else label
    assert final is not None  # a confirmation has a prediction; an override a checked label
    return PendingVerdict(index, new, final, comment, operator, item.inspection_id)


def write_verdict(log: InspectionLog, pending: PendingVerdict, rows: dict[tuple[str, str | None], int]) -> Inspection:
    """Write ``pending`` on the image's row for this model (``rows``: SHA-256 and model id to row id),
    recording the row first when there is none.

    One image and model keep one row: a verdict given again (or at another threshold, where the shown
    decision differs from the row's) is added to that row's history as the class the operator gave the
    part: ``confirmed`` when the row's decision is that class, else ``overridden`` to it.
    """
    new = pending.inspection
    key = (new.image_sha256, new.model_id)
    known = pending.inspection_id or rows.get(key)
    row = log.get(known) if known is not None else None
    if row is None or (row.image_sha256, row.model_id) != key:
        row_id = log.record(new)
        decided = new.prediction
    else:
        row_id, decided = row.id, row.prediction
    rows[key] = row_id
    verdict, label = ("confirmed", None) if pending.label == decided else ("overridden", pending.label)
    return log.set_verdict(row_id, verdict, label=label, comment=pending.comment, operator=pending.operator)


def record_verdict(
    log: InspectionLog,
    session: Session,
    spec: ModelSpec,
    model_id: str | None,
    index: int,
    verdict: str,
    *,
    label: str | None = None,
    comment: str = "",
    operator: str = "",
) -> Inspection:
    """:func:`prepare_verdict` and :func:`write_verdict` in one call (for scripts; the window writes off its
    thread), the image's row kept on the session's item.

    Raises:
        DefectlensError: as :func:`prepare_verdict`.
    """
    pending = prepare_verdict(session, spec, model_id, index, verdict, label=label, comment=comment, operator=operator)
    item = session.items[index]
    row = write_verdict(log, pending, {})
    apply_row(item, row)
    return row


def apply_row(item: Item, row: Inspection) -> None:
    """Show ``row``'s current verdict on ``item`` (the image's log row)."""
    item.inspection_id = row.id
    item.verdict, item.verdict_label, item.comment = row.verdict, row.verdict_label, row.comment or ""
    item.logged_prediction = row.prediction


def _inspection(
    session: Session, spec: ModelSpec, model_id: str | None, index: int, threshold: float | None
) -> NewInspection:
    view = session.view(index)
    data = view.item.path.read_bytes()
    width: int | None
    height: int | None
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except OSError:
        width = height = None  # scored before, so readable; a file changed since keeps the row honest
    pos = session.positive_class
    gate = view.item.gate
    return NewInspection(
        source="inspector",
        client_name=str(view.item.path),
        image_sha256=hashlib.sha256(data).hexdigest(),
        image_bytes=len(data),
        status="needs_review" if view.item.refused else "ok",
        reason=view.item.review,
        ood_score=None if gate is None else gate.ood_score,
        gate_flagged=None if gate is None else gate.flagged,
        prediction=view.prediction,
        probabilities=view.probabilities,
        defect_probability=defect_probability(view.probabilities, class_names=spec.class_names, positive_class=pos),
        threshold=threshold,
        temperature=spec.temperature,
        model_id=model_id,
        latency_ms=view.item.latency_ms,
        width=width,
        height=height,
    )


def csv_rows(session: Session) -> list[dict[str, Any]]:
    """One row per image of the batch, at the current threshold."""
    rows = []
    threshold = session.threshold if session.uses_threshold else None
    for i in range(len(session.items)):
        v = session.view(i)
        row: dict[str, Any] = {
            "file": str(v.item.path),
            "ground_truth": v.item.truth or "",
            "prediction": v.prediction or "",
            "match": v.match or "",
            "status": _status(v.item.error, v.item.refused, v.prediction),
            "reason": v.item.error or v.item.review,
        }
        for c in session.class_names:
            row[f"p_{c}"] = "" if v.prediction is None else round(v.probabilities[c], 6)
        row["confidence"] = "" if v.confidence is None else round(v.confidence, 6)
        row["threshold"] = "" if threshold is None else threshold
        row["positive_class"] = session.positive_class or ""
        row["latency_ms"] = "" if v.item.latency_ms is None else round(v.item.latency_ms, 3)
        row["verdict"] = v.item.verdict or ""
        row["verdict_label"] = v.item.verdict_label or ""
        row["comment"] = v.item.comment
        row["inspection_id"] = v.item.inspection_id or ""
        rows.append(row)
    return rows


def _status(error: str, refused: bool, prediction: str | None) -> str:
    if error:
        return "error"
    if refused:
        return "needs_review"
    return "ok" if prediction else "not scored"


#: The summary's count key of an image without a class, by its status.
_UNDECIDED = {"error": "ERROR", "needs_review": "NEEDS REVIEW", "not scored": "NOT SCORED"}


def summary(session: Session, *, model: str = "", validated_threshold: float | None = None) -> dict[str, Any]:
    """Counts per decision, unreadable files, FN/FP lists and the metrics at the current threshold."""
    rows = csv_rows(session)
    counts: dict[str, int] = {}
    for r in rows:
        key = r["prediction"] or _UNDECIDED[r["status"]]
        counts[key] = counts.get(key, 0) + 1
    metrics = session.metrics()
    verdicts = {"confirmed": 0, "overridden": 0, "none": 0}
    for item in session.items:
        verdicts[item.verdict or "none"] += 1
    lists = {name: [str(session.items[i].path) for i in session.select(name)] for name in ("missed", "false_alarms")}
    return {
        "model": model,
        "files": len(rows),
        "counts": counts,
        "threshold": session.threshold if session.uses_threshold else None,
        "positive_class": session.positive_class,
        "validated_threshold": validated_threshold,
        "labelled": int((session.truth_indices() >= 0).sum()),
        "metrics": None if metrics is None else {k: metrics.get(k) for k in SUMMARY_METRICS if k in metrics},
        "false_negatives": lists["missed"],
        "false_positives": lists["false_alarms"],
        "needs_review": [{"file": r["file"], "reason": r["reason"]} for r in rows if r["status"] == "needs_review"],
        "errors": [{"file": r["file"], "reason": r["reason"]} for r in rows if r["status"] == "error"],
        "verdicts": verdicts,
    }


def export(session: Session, path: str | Path, *, model: str = "", validated_threshold: float | None = None) -> Path:
    """Write the batch CSV to ``path`` and its summary beside it (``<stem>.summary.json``); returns the summary path."""
    path = Path(path)
    rows = csv_rows(session)
    if not rows:
        raise DefectlensError("nothing to export: open an image or a folder first")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = path.with_name(f"{path.stem}.summary.json")
    data = summary(session, model=model, validated_threshold=validated_threshold)
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return out
