"""Operations endpoints: liveness, readiness, Prometheus metrics and the served model's metadata."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from defectlens.serve.schemas import ErrorOut, ModelInfo
from defectlens.serve.service import Service


def model_info(service: Service) -> ModelInfo:
    """The served model as ``GET /v1/model`` describes it (spec, provenance, validation metrics)."""
    p = service.predictor
    spec, meta = p.spec, p.meta
    return ModelInfo(
        model_id=p.model_id,
        backend=p.backend,
        arch=spec.arch,
        classes=list(spec.class_names),
        positive_class=spec.positive_class,
        threshold=spec.threshold,
        temperature=spec.temperature,
        input_size=spec.input_size,
        in_channels=spec.in_channels,
        interpolation=spec.interpolation,
        tta=spec.tta,
        data_fingerprint=meta.get("data_fingerprint"),
        metrics=meta.get("metrics"),
        created=meta.get("created"),
        explain_available=p.has_torch_weights,
        gate=p.gate.describe(),
        ready=service.ready,
    )


def router(service: Service, check: Callable[..., Awaitable[None]]) -> APIRouter:
    api = APIRouter(tags=["operations"])

    @api.get("/healthz", summary="Liveness: the process is up (always open)")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get(
        "/readyz",
        summary="Readiness: model loaded and one warm-up inference done (always open)",
        responses={503: {"description": "still warming up, or the warm-up failed"}},
    )
    def readyz() -> JSONResponse:
        ready = service.ready
        return JSONResponse({"ready": ready, "model_id": service.predictor.model_id}, status_code=200 if ready else 503)

    @api.get(
        "/metrics",
        summary="Prometheus metrics (needs the API key when one is set)",
        dependencies=[Depends(check)],
        responses={200: {"content": {"text/plain": {}}}, 401: {"model": ErrorOut}},
    )
    def metrics() -> Response:
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    @api.get("/v1/model", response_model=ModelInfo, dependencies=[Depends(check)], responses={401: {"model": ErrorOut}})
    def get_model() -> ModelInfo:
        """Classes, positive class, threshold, temperature, input size, ids, validation metrics and the gate."""
        return model_info(service)

    return api
