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

The model lives in a :class:`~defectlens.inference.swap.ModelSlot`, so it can be swapped while the service runs
(``POST /v1/model``, ``POST /v1/model/rollback``, SIGHUP). A request takes the slot's current Predictor once, when
it arrives, and every step of it (decoding to the model's input, the model call, the decision, the log row, the
answer) uses that one: a request in flight finishes on the model that took it, and its row names that model. The
model batcher may gather frames taken by two models around a swap; each model then runs only its own frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.core.decision import defect_probability
from defectlens.inference.gate import GateCheck
from defectlens.inference.predictor import Predictor
from defectlens.inference.swap import ModelSlot, Swapped, warm_up
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
    predictor: Predictor  # the model that took the request (and decides it)
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
        model_path: str | Path | None = None,
    ):
        # threads=1: one core per model call, as the first model was loaded (serve.server)
        self.slot = ModelSlot(predictor, path=model_path, threads=1, precision=config.precision)
        self.log = log
        self.config = config
        self.store = store
        self.metrics = Metrics(drift=config.drift, watch_drift=config.drift_watch)
        self.ready = False
        self._pool: ThreadPoolExecutor | None = None
        self._warmup: asyncio.Task[None] | None = None
        self._hangups: set[asyncio.Task[None]] = set()
        self._model: Batcher[tuple[Predictor, Decoded], Judged] = Batcher(
            self._run_model,
            max_batch=config.max_batch,
            max_wait=config.batch_wait_ms / 1000.0,
            name="defectlens-model",
            concurrency=config.model_calls,
        )
        self._writer: Batcher[list[NewInspection], list[int]] = Batcher(
            self._commit, max_batch=256, name="defectlens-log"
        )

    @property
    def predictor(self) -> Predictor:
        """The model in force now (a request takes it once; see the module docstring)."""
        return self.slot.current

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start threads and batchers, then warm the model up in the background (``/readyz``)."""
        self._pool = ThreadPoolExecutor(max_workers=self.config.threads, thread_name_prefix="defectlens-worker")
        self._model.start()
        self._writer.start()
        self._warmup = asyncio.get_running_loop().create_task(self._warm_up())
        self._watch_hangup(True)

    async def stop(self) -> None:
        self._watch_hangup(False)
        if self._warmup is not None:
            await asyncio.gather(self._warmup, return_exceptions=True)
        await self._model.stop()
        await self._writer.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def _warm_up(self) -> None:
        try:  # not through _run_model: the warm-up is no served batch
            await asyncio.get_running_loop().run_in_executor(self._pool, warm_up, self.predictor)
        except Exception:
            _log.exception("model warm-up failed; /readyz stays 503")
            return
        self.ready = True
        self.metrics.ready.set(1)

    # -- swapping the model (blocking loads on a thread of their own, never the event loop) ---------

    async def swap(self, path: str, *, allow_new_classes: bool = False) -> Swapped:
        """Load the bundle at ``path`` and put it in force (see :meth:`ModelSlot.swap`); counted in the metrics.

        Raises:
            DefectlensError: for a missing, corrupt or refused bundle; the current model keeps serving.
        """
        return await self._change("load", self.slot.swap, path, allow_new_classes=allow_new_classes, bundle_only=True)

    async def rollback(self) -> Swapped:
        """Put the previous model back in force (see :meth:`ModelSlot.rollback`)."""
        return await self._change("rollback", self.slot.rollback)

    async def reload(self) -> Swapped:
        """Read the model file the service started with again (SIGHUP; see :meth:`ModelSlot.reload`)."""
        return await self._change("reload", self.slot.reload)

    async def _change(self, action: str, step: Callable[..., Swapped], *args: Any, **kwargs: Any) -> Swapped:
        try:
            done = await asyncio.get_running_loop().run_in_executor(None, functools.partial(step, *args, **kwargs))
        except Exception as exc:
            self.metrics.model_swaps.labels(action, "failed").inc()
            _log.warning("model %s refused; model %s keeps serving: %s", action, self.predictor.model_id, exc)
            raise
        self.metrics.model_swaps.labels(action, "ok").inc()
        _log.warning("model %s: now serving %s (previous %s)", action, done.model_id, done.previous_model_id)
        return done

    def _watch_hangup(self, on: bool) -> None:
        """SIGHUP re-reads the start model file, when there is one and this is the main thread (``defectlens
        serve``; an app in a test client runs elsewhere and leaves signals alone)."""
        hangup = getattr(signal, "SIGHUP", None)
        if hangup is None or self.slot.path is None or threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        if not on:
            loop.remove_signal_handler(hangup)
            return

        def reload() -> None:
            task = loop.create_task(self._quiet_reload())
            self._hangups.add(task)
            task.add_done_callback(self._hangups.discard)

        loop.add_signal_handler(hangup, reload)

    async def _quiet_reload(self) -> None:
        with contextlib.suppress(Exception):  # refused: logged and counted by _change; the old model serves on
            await self.reload()

    # -- the blocking steps (threads) -------------------------------------------------------------

    def _run_model(self, items: list[tuple[Predictor, Decoded]]) -> list[Judged]:
        """Judge a gathered batch; frames taken by different models (around a swap) go to their own model,
        one call each, so no model ever sees another's input."""
        by_model: dict[int, list[int]] = {}
        for i, (predictor, _) in enumerate(items):
            by_model.setdefault(id(predictor), []).append(i)
        judged: list[Judged | None] = [None] * len(items)
        for indices in by_model.values():
            predictor = items[indices[0]][0]
            for i, result in zip(indices, self._judge(predictor, [items[i][1] for i in indices]), strict=True):
                judged[i] = result
        return [j for j in judged if j is not None]

    def _judge(self, predictor: Predictor, frames: list[Decoded]) -> list[Judged]:
        self.metrics.batch_size.observe(len(frames))
        arrays = [np.asarray(f.array) for f in frames]  # only decoded uploads are submitted
        sizes = [(f.width, f.height) if f.width is not None and f.height is not None else None for f in frames]
        logits, checks = predictor.judge(arrays, sizes)
        return list(zip(predictor.probabilities(logits), checks, strict=True))

    def _commit(self, groups: list[list[NewInspection]]) -> list[list[int]]:
        rows = [row for group in groups for row in group]
        self.metrics.commit_size.observe(len(rows))
        ids = iter(self.log.record_many(rows))
        return [[next(ids) for _ in group] for group in groups]

    def _decode(self, upload: Upload, predictor: Predictor) -> tuple[Decoded, str | None]:
        decoded = decode(upload, predictor)
        path = None
        if self.store is not None and decoded.error is None:
            try:
                path = self.store.put(upload.data, image_format=decoded.image_format)
            except OSError as exc:  # a full or failing disk costs the stored copy, never the inspection
                self.metrics.errors.labels("image_store").inc()
                _log.warning("image store %s: %r kept without its image: %s", self.store.folder, upload.name, exc)
        return decoded, path

    # -- one request --------------------------------------------------------------------------------

    async def _score(self, upload: Upload, start: float, predictor: Predictor) -> Scored:
        loop = asyncio.get_running_loop()
        self._model.announce(1)
        submitted = False
        try:
            decoded, path = await loop.run_in_executor(self._pool, self._decode, upload, predictor)
            probs, check = None, None
            if decoded.array is not None:
                submitted = True
                if self.config.batching:
                    probs, check = await self._model.submit((predictor, decoded))
                else:
                    probs, check = (await loop.run_in_executor(self._pool, self._run_model, [(predictor, decoded)]))[0]
            latency = (time.perf_counter() - start) * 1000.0
            return Scored(decoded, probs, latency, predictor, path, check, refused=predictor.gate.refuses(check))
        finally:
            if not submitted or not self.config.batching:
                self._model.withdraw(1)

    async def inspect(
        self, uploads: list[Upload], *, threshold: float | None, explain: bool, source: str
    ) -> list[dict[str, Any]]:
        """Classify, log and describe every upload (one dict per file, in order; bad files too)."""
        start = time.perf_counter()
        predictor = self.slot.current  # the model that takes this request, whatever swaps meanwhile
        scored = await asyncio.gather(*(self._score(u, start, predictor) for u in uploads))
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
        predictor = scored[0].predictor  # one request, one model
        names = predictor.spec.class_names
        idx = iter(predictor.decide(np.stack(good), threshold) if good else [])
        labels = [names[int(next(idx))] if s.status == "ok" else None for s in scored]
        for s, label in zip(scored, labels, strict=True):
            self._count(s, label)
        return labels

    def _count(self, s: Scored, label: str | None) -> None:
        m = self.metrics
        m.drift.observe(s.predictor, s.check, label, error=s.decoded.error is not None)  # follows swaps by model id
        if s.decoded.error is not None:
            m.errors.labels(s.decoded.error.kind).inc()
        elif label is None:
            m.gate_flags.labels("needs_review").inc()
        else:
            m.predictions.labels(label).inc()
            if s.check is not None and s.check.flagged:
                m.gate_flags.labels("warned").inc()

    def _row(self, s: Scored, label: str | None, threshold: float | None, source: str) -> NewInspection:
        spec, d, check = s.predictor.spec, s.decoded, s.check
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
            model_id=s.predictor.model_id,
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
            "positive_class": s.predictor.spec.positive_class,
            **image,
            **gate,
        }

    async def _add_explanations(self, scored: list[Scored], results: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        for s, result in zip(scored, results, strict=True):
            if result["status"] == "ok":
                extra = await loop.run_in_executor(
                    self._pool, explain_png, s.predictor, s.decoded.upload.data, result["prediction"]
                )
                result.update(extra)
