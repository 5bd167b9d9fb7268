"""The service behind the endpoints: decode uploads, batch them through the Predictor, decide, log.

One :class:`Service` per app holds the Predictor, the inspection log, the optional image store,
the worker threads and the two batchers (model calls, one per inference core, and log commits). Every step that blocks
(decoding, inference, fsync, Grad-CAM) runs on a thread, never on the event loop.

The decision uses ``Predictor.outputs``, ``Predictor.probabilities``, ``Predictor.decide`` and the
Predictor's gate (``predictor.gate``, its mode from ``--gate``), so a threshold means here what it means
in the CLI and in evaluation, and a frame the gate flags is ``needs_review`` here as it is there: no
class, the gate's reasons and scores (an answer, HTTP 200 for the file, logged as its own status). A
request's answer is built only after its rows are committed to the log: an inspection id a client
receives is on disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from defectlens.core.decision import defect_probability
from defectlens.inference.gate import GateCheck
from defectlens.inference.predictor import Predictor
from defectlens.inspections import ImageStore, InspectionLog, NewInspection
from defectlens.serve.batcher import Batcher
from defectlens.serve.config import ServeConfig
from defectlens.serve.explaining import explain_png
from defectlens.serve.metrics import Metrics
from defectlens.serve.uploads import Decoded, Upload, decode

_log = logging.getLogger("defectlens.serve")


#: What the model thread gives back per image: its calibrated probabilities and the gate's finding.
Judged = tuple[np.ndarray, GateCheck | None]


@dataclass(frozen=True)
class Scored:
    """One upload after the model: its decoding, probabilities (None on error), the gate's finding
    (None when not gated), whether the gate refused it a class, and its latency."""

    decoded: Decoded
    probs: np.ndarray | None
    latency_ms: float
    image_path: str | None = None
    check: GateCheck | None = None
    refused: bool = False

    @property
    def status(self) -> str:
        """``error``, ``needs_review`` (the gate refused the frame a class) or ``ok`` (a decision)."""
        if self.decoded.error is not None:
            return "error"
        return "needs_review" if self.refused else "ok"


class Service:
    """Everything one app serves with (see the module docstring)."""

    def __init__(
        self,
        predictor: Predictor,
        log: InspectionLog,
        *,
        config: ServeConfig,
        store: ImageStore | None = None,
    ):
        self.predictor = predictor
        self.log = log
        self.config = config
        self.store = store
        self.metrics = Metrics()
        self.ready = False
        self._pool: ThreadPoolExecutor | None = None
        self._warmup: asyncio.Task[None] | None = None
        self._model: Batcher[Decoded, Judged] = Batcher(
            self._run_model,
            max_batch=config.max_batch,
            max_wait=config.batch_wait_ms / 1000.0,
            name="defectlens-model",
            concurrency=config.model_calls,
        )
        self._writer: Batcher[list[NewInspection], list[int]] = Batcher(
            self._commit, max_batch=256, name="defectlens-log"
        )

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start threads and batchers, then warm the model up in the background (``/readyz``)."""
        self._pool = ThreadPoolExecutor(max_workers=self.config.threads, thread_name_prefix="defectlens-worker")
        self._model.start()
        self._writer.start()
        self._warmup = asyncio.get_running_loop().create_task(self._warm_up())

    async def stop(self) -> None:
        if self._warmup is not None:
            await asyncio.gather(self._warmup, return_exceptions=True)
        await self._model.stop()
        await self._writer.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def _warm_up(self) -> None:
        spec = self.predictor.spec
        blank = np.zeros((1, spec.in_channels, spec.input_size, spec.input_size), np.uint8)
        try:  # not through _run_model: the warm-up is no served batch
            await asyncio.get_running_loop().run_in_executor(self._pool, self.predictor.logits, blank)
        except Exception:
            _log.exception("model warm-up failed; /readyz stays 503")
            return
        self.ready = True
        self.metrics.ready.set(1)

    # -- the blocking steps (threads) -------------------------------------------------------------

    def _run_model(self, frames: list[Decoded]) -> list[Judged]:
        self.metrics.batch_size.observe(len(frames))
        arrays = [np.asarray(f.array) for f in frames]  # only decoded uploads are submitted
        sizes = [(f.width, f.height) if f.width is not None and f.height is not None else None for f in frames]
        logits, checks = self.predictor.judge(arrays, sizes)
        return list(zip(self.predictor.probabilities(logits), checks, strict=True))

    def _commit(self, groups: list[list[NewInspection]]) -> list[list[int]]:
        rows = [row for group in groups for row in group]
        self.metrics.commit_size.observe(len(rows))
        ids = iter(self.log.record_many(rows))
        return [[next(ids) for _ in group] for group in groups]

    def _decode(self, upload: Upload) -> tuple[Decoded, str | None]:
        decoded = decode(upload, self.predictor)
        path = None
        if self.store is not None and decoded.error is None:
            path = self.store.put(upload.data, image_format=decoded.image_format)
        return decoded, path

    # -- one request --------------------------------------------------------------------------------

    async def _score(self, upload: Upload, start: float) -> Scored:
        loop = asyncio.get_running_loop()
        self._model.announce(1)
        submitted = False
        try:
            decoded, path = await loop.run_in_executor(self._pool, self._decode, upload)
            probs, check = None, None
            if decoded.array is not None:
                submitted = True
                if self.config.batching:
                    probs, check = await self._model.submit(decoded)
                else:
                    probs, check = (await loop.run_in_executor(self._pool, self._run_model, [decoded]))[0]
            latency = (time.perf_counter() - start) * 1000.0
            return Scored(decoded, probs, latency, path, check, refused=self.predictor.gate.refuses(check))
        finally:
            if not submitted or not self.config.batching:
                self._model.withdraw(1)

    async def inspect(
        self, uploads: list[Upload], *, threshold: float | None, explain: bool, source: str
    ) -> list[dict[str, Any]]:
        """Classify, log and describe every upload (one dict per file, in order; bad files too)."""
        start = time.perf_counter()
        scored = await asyncio.gather(*(self._score(u, start) for u in uploads))
        labels = self._decide(scored, threshold)
        rows = [self._row(s, label, threshold, source) for s, label in zip(scored, labels, strict=True)]
        ids = await self._writer.submit(rows)
        results = [self._describe(s, row, i) for s, row, i in zip(scored, rows, ids, strict=True)]
        if explain:
            await self._add_explanations(scored, results)
        return results

    def _decide(self, scored: list[Scored], threshold: float | None) -> list[str | None]:
        """The class of every decided upload (None for an error or a frame sent for review), counted in the metrics."""
        good = [s.probs for s in scored if s.status == "ok" and s.probs is not None]
        names = self.predictor.spec.class_names
        idx = iter(self.predictor.decide(np.stack(good), threshold) if good else [])
        labels = [names[int(next(idx))] if s.status == "ok" else None for s in scored]
        for s, label in zip(scored, labels, strict=True):
            self._count(s, label)
        return labels

    def _count(self, s: Scored, label: str | None) -> None:
        m = self.metrics
        if s.decoded.error is not None:
            m.errors.labels(s.decoded.error.kind).inc()
        elif label is None:
            m.gate_flags.labels("needs_review").inc()
        else:
            m.predictions.labels(label).inc()
            if s.check is not None and s.check.flagged:
                m.gate_flags.labels("warned").inc()

    def _row(self, s: Scored, label: str | None, threshold: float | None, source: str) -> NewInspection:
        spec, d, check = self.predictor.spec, s.decoded, s.check
        decided = s.probs if s.status == "ok" else None  # a frame not judged keeps no probabilities
        probs = {} if decided is None else {n: float(p) for n, p in zip(spec.class_names, decided, strict=True)}
        flag = check.reason if check is not None and check.flagged else ""
        return NewInspection(
            source=source,
            client_name=d.upload.name,
            image_sha256=d.sha256,
            image_bytes=len(d.upload.data),
            status=s.status,
            reason=flag if d.error is None else d.error.reason,
            warning=d.warning,
            ood_score=None if check is None else check.ood_score,
            gate_flagged=None if check is None else check.flagged,
            prediction=label,
            probabilities=probs,
            defect_probability=defect_probability(
                probs, class_names=spec.class_names, positive_class=spec.positive_class
            ),
            threshold=spec.threshold if threshold is None else threshold,
            temperature=spec.temperature,
            model_id=self.predictor.model_id,
            latency_ms=round(s.latency_ms, 3),
            width=d.width,
            height=d.height,
            image_path=s.image_path,
        )

    def _describe(self, s: Scored, row: NewInspection, inspection_id: int) -> dict[str, Any]:
        common = {
            "file": row.client_name,
            "inspection_id": inspection_id,
            "model_id": row.model_id,
            "image_sha256": row.image_sha256,
            "threshold": row.threshold,
            "temperature": row.temperature,
            "latency_ms": row.latency_ms,
        }
        if s.decoded.error is not None:
            err = s.decoded.error
            return {**common, "status": "error", "http_status": err.status, "error": err.kind, "reason": err.reason}
        image = {"width": row.width, "height": row.height, "image_path": row.image_path, "warning": row.warning}
        gate = {} if s.check is None else {"gate": s.check.to_dict()}
        if s.status == "needs_review":  # an answer (200), not an error: the frame is not one the model can judge
            return {**common, "status": "needs_review", "http_status": 200, "reason": row.reason, **image, **gate}
        return {
            **common,
            "status": "ok",
            "http_status": 200,
            "prediction": row.prediction,
            "confidence": row.probabilities[row.prediction or ""],
            "probabilities": row.probabilities,
            "defect_probability": row.defect_probability,
            "positive_class": self.predictor.spec.positive_class,
            **image,
            **gate,
        }

    async def _add_explanations(self, scored: list[Scored], results: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        for s, result in zip(scored, results, strict=True):
            if result["status"] == "ok":
                extra = await loop.run_in_executor(
                    self._pool, explain_png, self.predictor, s.decoded.upload.data, result["prediction"]
                )
                result.update(extra)
