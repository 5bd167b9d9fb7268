"""Request and response shapes of the REST API, as they appear in the OpenAPI schema at ``/docs``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

# one definition: the log's row and verdict history, as the API shows them
from defectlens.inspections.store import Inspection, Tally, VerdictEntry


@dataclass(frozen=True)
class InspectionDetail(Inspection):
    """One inspection with its verdict history (oldest first; the newest is its ``verdict``)."""

    verdicts: list[VerdictEntry] = field(default_factory=list)


class GateOut(BaseModel):
    """The gate's finding for one frame (present when the served model has a gate and it is not off)."""

    flagged: bool = Field(description="the frame is not one the model can judge")
    reasons: list[str] = Field(description="why, one sentence each (empty when not flagged)")
    ood_score: float | None = Field(description="out-of-distribution score (None where the backend computes none)")
    ood_threshold: float | None = Field(description="the score above which a frame is flagged")
    stats: dict[str, float] = Field(description="the frame's image statistics the quality rules read")


class FileResult(BaseModel):
    """One uploaded file's outcome. ``status`` says which fields are filled: ``ok`` a decision (class and
    probabilities), ``needs_review`` a frame the gate would not let the model judge (no class; ``reason`` and
    ``gate`` say why; HTTP 200: an answer, not an error), ``error`` an input that could not be used."""

    file: str = Field(description="the client's file name, as data (never used as a path)")
    status: Literal["ok", "needs_review", "error"]
    http_status: int = Field(description="200, or 415 (not an image / unsupported mode) or 422 (corrupt, too large)")
    inspection_id: int = Field(description="row id in the inspection log (committed before this answer)")
    model_id: str | None
    image_sha256: str
    threshold: float | None = Field(description="decision threshold used on the defect probability")
    temperature: float | None
    latency_ms: float | None = Field(description="decoding, queueing and inference for this file")
    prediction: str | None = None
    confidence: float | None = Field(None, description="probability of the predicted class")
    probabilities: dict[str, float] | None = None
    defect_probability: float | None = None
    positive_class: str | None = None
    width: int | None = None
    height: int | None = None
    image_path: str | None = Field(None, description="stored copy, relative to --store-images")
    error: str | None = Field(None, description="error kind: not_an_image, unsupported_image, corrupt_image, ...")
    reason: str | None = Field(None, description="why not judged (needs_review) or not read (error)")
    gate: GateOut | None = Field(None, description="the gate's finding (absent when the model is not gated)")
    warning: str | None = Field(None, description="what decoding noticed but did not stop for (corrupt JPEG data...)")
    overlay_png: str | None = Field(None, description="explanation overlay, base64 PNG (explain=true)")
    explain_method: str | None = Field(
        None, description="how the overlay was made: 'CAM (onnxruntime)' from the graph, or 'Grad-CAM (torch)'"
    )
    explain_note: str | None = Field(None, description="why there is no overlay (explain=true)")


class PredictResponse(BaseModel):
    """All files of one request, in upload order."""

    model_id: str | None
    threshold: float | None
    temperature: float
    files: int
    ok: int = Field(description="files decided (a class given)")
    needs_review: int = Field(description="files the gate sent for review (no class given)")
    errors: int = Field(description="files that could not be used")
    latency_ms: float
    results: list[FileResult]


class ModelInfo(BaseModel):
    """What the served bundle is and how it decides."""

    model_id: str | None
    backend: str
    runtime_choice: dict[str, Any] | None = Field(
        None, description="how backend auto chose the runtime: runtime, how (measured/cached/rule), p50_ms per runtime"
    )
    arch: str
    classes: list[str]
    positive_class: str | None
    threshold: float | None
    temperature: float
    input_size: int
    in_channels: int
    interpolation: str
    tta: str
    data_fingerprint: str | None
    metrics: dict[str, Any] | None = Field(description="validation metrics recorded in the bundle")
    created: str | None
    explain_available: bool = Field(description="the model carries torch weights for Grad-CAM")
    gate: dict[str, Any] = Field(description="the gate in force: mode, active, ood_threshold, false_flag_rate, note")
    ready: bool
    previous_model_id: str | None = Field(
        None, description="the model the last swap replaced, kept loaded for POST /v1/model/rollback (None: no swap)"
    )


class ModelSwapIn(BaseModel):
    """Which bundle to serve from now on: a ``.dlens`` file on the server's disk."""

    path: str = Field(min_length=1, max_length=4096, description="the bundle's path on the server")
    allow_new_classes: bool = Field(
        False,
        description="accept a model whose classes differ from the served one's (the log's columns change meaning)",
    )


class ModelSwapOut(BaseModel):
    """What a swap or rollback did: the model now in force and the one kept for a rollback."""

    action: Literal["load", "reload", "rollback"]
    model_id: str | None
    previous_model_id: str | None
    classes: list[str]
    path: str | None = Field(description="the bundle loaded (None for a rollback)")
    load_ms: float = Field(description="loading, checking and warming the new model up (it served on meanwhile)")


class InspectionPage(BaseModel):
    """A page of inspections, newest first, and how many match the filters in all."""

    total: int
    limit: int
    offset: int
    items: list[Inspection]


class TallyOut(BaseModel):
    """Matching inspections by outcome: decisions per class, frames sent for review and errors apart."""

    total: int
    decided: dict[str, int] = Field(description="decisions (status ok) per predicted class")
    needs_review: int = Field(description="frames the gate sent for review: never counted in decided")
    errors: int
    flagged: int = Field(description="decisions the gate flagged but let through (--gate warn)")
    dropped: int = Field(0, description="a line station's frames that never reached the model (logged as dropped)")

    @classmethod
    def of(cls, tally: Tally) -> TallyOut:
        return cls(**tally.to_dict())


class VerdictIn(BaseModel):
    """An operator's verdict: ``confirmed`` (the model was right) or ``overridden`` with the true label."""

    verdict: Literal["confirmed", "overridden"]
    label: str | None = Field(None, description="the part's true class (required to override)")
    comment: str = Field("", max_length=2000)
    operator: str = Field("", max_length=200, description="who gives the verdict (kept in the history)")


class ErrorOut(BaseModel):
    """Every error the API returns: a short kind and a sentence saying what to do."""

    error: str
    detail: Any
