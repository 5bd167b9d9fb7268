"""Operations endpoints: liveness, readiness, Prometheus metrics, the served model's metadata, and changing the
model while serving (``POST /v1/model``, ``POST /v1/model/rollback``: always behind the API key)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse, Response

from defectlens.core.errors import DefectlensError
from defectlens.inference.swap import ClassesDiffer, NoPrevious, Swapped
from defectlens.serve.auth import key_checker
from defectlens.serve.schemas import ErrorOut, ModelInfo, ModelSwapIn, ModelSwapOut
from defectlens.serve.service import Service

_SWAP_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "API key missing or wrong"},
    403: {"model": ErrorOut, "description": "the service was started without an API key: no model changes"},
    409: {"model": ErrorOut, "description": "other classes than the served model's, or no model to roll back to"},
    422: {"model": ErrorOut, "description": "the bundle is missing, unreadable or refused; the old model serves on"},
}


def _swap_answer(step: Callable[[], Awaitable[Swapped]]) -> Callable[[], Awaitable[JSONResponse]]:
    async def answer() -> JSONResponse:
        try:
            done = await step()
        except ClassesDiffer as exc:
            return JSONResponse({"error": "classes_differ", "detail": str(exc)}, status_code=409)
        except NoPrevious as exc:
            return JSONResponse({"error": "no_previous_model", "detail": str(exc)}, status_code=409)
        except DefectlensError as exc:
            return JSONResponse({"error": "model_refused", "detail": str(exc)}, status_code=422)
        return JSONResponse(ModelSwapOut.model_validate(done.to_dict()).model_dump())

    return answer


def model_info(service: Service) -> ModelInfo:
    """The served model as ``GET /v1/model`` describes it (spec, provenance, validation metrics)."""
    p = service.predictor
    spec, meta = p.spec, p.meta
    previous = service.slot.previous
    return ModelInfo(
        model_id=p.model_id,
        backend=p.backend,
        runtime_choice=p.runtime_choice,
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
        previous_model_id=None if previous is None else previous.model_id,
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

    admin = [Depends(key_checker(service.config.api_key, required=True))]

    @api.post("/v1/model", response_model=ModelSwapOut, dependencies=admin, responses=_SWAP_ERRORS)
    async def swap_model(body: Annotated[ModelSwapIn, Body()]) -> JSONResponse:
        """Serve another bundle from now on, without stopping: it is loaded, checked and warmed up while the
        current model serves on; requests in flight finish on the model that took them. The replaced model stays
        loaded for ``POST /v1/model/rollback``. Refused (the old model serving on): a missing, corrupt or refused
        bundle (422), other classes unless ``allow_new_classes`` (409)."""
        return await _swap_answer(lambda: service.swap(body.path, allow_new_classes=body.allow_new_classes))()

    @api.post("/v1/model/rollback", response_model=ModelSwapOut, dependencies=admin, responses=_SWAP_ERRORS)
    async def rollback_model() -> JSONResponse:
        """Put the model the last swap replaced back in force (instant: it is still loaded)."""
        return await _swap_answer(service.rollback)()

    return api
