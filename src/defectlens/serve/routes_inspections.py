"""The inspection log over HTTP: list with filters, counts by outcome, one row, operator verdicts, CSV export.

A frame the gate sent for review (``status=needs_review``) has no class: the ``label`` filter and the
tally's per-class counts never include it; an operator reviews it by overriding it with the part's class.
Verdicts are appended to each inspection's history (``GET /v1/inspections/{id}`` lists it); ids and
offsets past SQLite's integers are refused (422) rather than overflow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import StreamingResponse

from defectlens.inspections import MAX_ID, Filters
from defectlens.serve.schemas import ErrorOut, Inspection, InspectionDetail, InspectionPage, TallyOut, VerdictIn
from defectlens.serve.service import Service

#: An inspection id in a path: SQLite's integer range (a larger one would overflow, not miss).
InspectionId = Annotated[int, Path(ge=1, le=MAX_ID, description="the inspection's id")]


def parse_time(value: str | None, *, end: bool = False) -> str | None:
    """An ISO 8601 date or time as the log's UTC text; a date alone (``2026-12-05`` or ``20261205``) means the
    start of that day, or with ``end=True`` its last millisecond, so ``until=<date>`` includes the whole day.

    Times without a zone are taken as UTC.

    Raises:
        HTTPException: 422 naming the value when it is not an ISO 8601 date or time (or out of range).
    """
    if value is None:
        return None
    text = value.strip()
    try:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        else:
            when = datetime.combine(day, time.max if end else time.min)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError):
        raise HTTPException(
            422, f"{value[:100]!r} is not an ISO 8601 date or time (e.g. 2026-11-27 or 2026-11-27T08:00:00Z)"
        ) from None


def filters(
    label: Annotated[str | None, Query(description="the model's prediction")] = None,
    verdict: Annotated[Literal["confirmed", "overridden", "none"] | None, Query(description="none: unreviewed")] = None,
    since: Annotated[str | None, Query(description="ISO 8601 date or time (UTC unless zoned)")] = None,
    until: Annotated[str | None, Query(description="ISO 8601; a bare date includes that whole day")] = None,
    model_id: str | None = None,
    status: Annotated[
        Literal["ok", "needs_review", "error", "dropped"] | None,
        Query(description="ok: decided; needs_review: not judged; dropped: a station's frame never judged"),
    ] = None,
    station: Annotated[str | None, Query(description="a line station's name (defectlens line)")] = None,
) -> Filters:
    """The query parameters every listing shares, as log :class:`Filters`."""
    return Filters(
        label=label,
        verdict=verdict,
        since=parse_time(since),
        until=parse_time(until, end=True),
        model_id=model_id,
        status=status,
        station=station,
    )


def router(service: Service, check: Callable[..., Awaitable[None]]) -> APIRouter:
    api = APIRouter(tags=["inspections"], dependencies=[Depends(check)])
    log = service.log

    @api.get("/v1/inspections", response_model=InspectionPage, responses={401: {"model": ErrorOut}})
    def list_inspections(
        found: Annotated[Filters, Depends(filters)],
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ) -> InspectionPage:
        """Inspections matching the filters, newest first, ``limit`` from ``offset``."""
        rows = log.query(found, limit=limit, offset=offset)
        items = rows
        return InspectionPage(total=log.count(found), limit=limit, offset=offset, items=items)

    @api.get("/v1/inspections.csv", responses={200: {"content": {"text/csv": {}}}, 401: {"model": ErrorOut}})
    def export_csv(found: Annotated[Filters, Depends(filters)]) -> StreamingResponse:
        """Every matching inspection as CSV, oldest first, streamed in chunks."""
        headers = {"Content-Disposition": 'attachment; filename="inspections.csv"'}
        return StreamingResponse(log.iter_csv(found), media_type="text/csv; charset=utf-8", headers=headers)

    @api.get("/v1/inspections/tally", response_model=TallyOut, responses={401: {"model": ErrorOut}})
    def tally(found: Annotated[Filters, Depends(filters)]) -> TallyOut:
        """Matching inspections by outcome: decisions per class, with frames sent for review and errors apart."""
        return TallyOut.of(log.tally(found))

    @api.get("/v1/inspections/{inspection_id}", response_model=InspectionDetail, responses={404: {"model": ErrorOut}})
    def get_inspection(inspection_id: InspectionId) -> InspectionDetail:
        """One inspection by id, with every verdict given on it (who, when, what; oldest first)."""
        row = log.get(inspection_id)
        if row is None:
            raise HTTPException(404, f"no inspection with id {inspection_id}")
        return InspectionDetail(**row.to_dict(), verdicts=log.verdicts(inspection_id))

    @api.post(
        "/v1/inspections/{inspection_id}/verdict",
        response_model=Inspection,
        responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    def record_verdict(inspection_id: InspectionId, body: VerdictIn) -> Inspection:
        """Confirm the model's decision, or override it with the part's true class (committed before the answer).

        The verdict is added to the inspection's history; overriding to the class it already has is refused.
        """
        row = log.get(inspection_id)
        if row is None:
            raise HTTPException(404, f"no inspection with id {inspection_id}")
        classes = service.predictor.spec.class_names  # the model in force now (POST /v1/model may change it)
        if body.verdict == "overridden" and body.label not in classes:
            raise HTTPException(422, f"an override needs a label, one of {', '.join(classes)}; got {body.label!r}")
        if row.status == "error":
            raise HTTPException(422, f"inspection {inspection_id} has no decision to review ({row.reason})")
        if row.status == "needs_review" and body.verdict == "confirmed":
            raise HTTPException(
                422, f"inspection {inspection_id} was not judged ({row.reason}): override it with the part's class"
            )
        label = body.label if body.verdict == "overridden" else None
        done = log.set_verdict(inspection_id, body.verdict, label=label, comment=body.comment, operator=body.operator)
        if row.status == "ok":  # the live agreement of the drift watch (a judged frame only)
            service.metrics.drift.verdict(row.model_id, agreed=body.verdict == "confirmed")
        return done

    return api
