"""``POST /v1/predict``: classify one or many uploaded images, log each, answer per file.

Status of the whole request: 200 when at least one file was answered (each file carries its own
``http_status``, like a 207 multi-status); when every file failed, their common status (415 or
422), or 422 when they failed differently. Either way the body has one result per file. A frame the
gate would not let the model judge (``status="needs_review"``: no class, the reason and the gate's
scores) is an answer, not a failure: its ``http_status`` is 200, and the body counts it apart from
the decisions (``ok``) and the failures (``errors``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from defectlens.serve.schemas import ErrorOut, PredictResponse
from defectlens.serve.service import Service
from defectlens.serve.uploads import Upload, client_name

#: Most files one request may carry.
MAX_FILES = 64
#: Request header the upload page sets, so the log tells page uploads ("web") from API calls ("api").
CLIENT_HEADER = "x-defectlens-client"


def request_status(results: list[dict[str, Any]]) -> int:
    """200 if any file was answered (decided or sent for review); else the files' common error status, or 422
    when they differ."""
    if any(r["status"] != "error" for r in results):
        return 200
    codes = {int(r["http_status"]) for r in results}
    return codes.pop() if len(codes) == 1 else 422


def router(service: Service, check: Callable[..., Awaitable[None]]) -> APIRouter:
    api = APIRouter(tags=["predict"], dependencies=[Depends(check)])

    @api.post(
        "/v1/predict",
        summary="Classify uploaded images",
        response_model=None,
        responses={
            200: {"model": PredictResponse, "description": "at least one file answered (see each status)"},
            401: {"model": ErrorOut, "description": "API key missing or wrong"},
            413: {"model": ErrorOut, "description": "request body over --max-upload-mb"},
            415: {"model": PredictResponse, "description": "every file was not an image we read"},
            422: {"model": PredictResponse, "description": "every file failed (corrupt, truncated, too large)"},
        },
    )
    async def predict(
        request: Request,
        files: Annotated[list[UploadFile], File(description="one or more images (repeat the field)")],
        threshold: Annotated[float | None, Form(ge=0.0, le=1.0, description="decision threshold for this call")] = None,
        explain: Annotated[bool, Form(description="add a Grad-CAM overlay per file")] = False,
        threshold_q: Annotated[float | None, Query(alias="threshold", ge=0.0, le=1.0)] = None,
        explain_q: Annotated[bool, Query(alias="explain")] = False,
    ) -> JSONResponse:
        """Classify every uploaded file with the served model; each is logged before the answer.

        ``threshold`` and ``explain`` may be sent as form fields or as query parameters.
        """
        start = time.perf_counter()
        if len(files) > MAX_FILES:
            return JSONResponse(
                {"error": "too_many_files", "detail": f"{len(files)} files; send at most {MAX_FILES} per request"},
                status_code=422,
            )
        uploads = [Upload(client_name(f.filename, i), await f.read()) for i, f in enumerate(files)]
        chosen = threshold if threshold is not None else threshold_q
        source = "web" if request.headers.get(CLIENT_HEADER) == "page" else "api"
        results = await service.inspect(uploads, threshold=chosen, explain=explain or explain_q, source=source)
        first = results[0]  # every file of a request is decided by the model that took it (a swap may follow)
        statuses = [r["status"] for r in results]
        body = {
            "model_id": first["model_id"],
            "threshold": first["threshold"],
            "temperature": first["temperature"],
            "files": len(results),
            "ok": statuses.count("ok"),
            "needs_review": statuses.count("needs_review"),
            "errors": statuses.count("error"),
            "latency_ms": round((time.perf_counter() - start) * 1000.0, 3),
            "results": results,
        }
        return JSONResponse(body, status_code=request_status(results))

    return api
