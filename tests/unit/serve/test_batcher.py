"""The micro-batcher: concurrent items share one call, bounded by max_batch; errors reach every caller."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from defectlens.serve.batcher import Batcher
from tests.unit.serve.conftest import png_bytes


def run(coro):
    return asyncio.run(coro)


async def _gather(n, *, max_batch, announce=True, fail=False, max_wait=5.0):
    sizes = []

    def fn(items):
        sizes.append(len(items))
        if fail:
            raise ValueError("model exploded")
        return [x * 10 for x in items]

    b = Batcher(fn, max_batch=max_batch, max_wait=max_wait, name="test")
    b.start()
    try:
        if announce:
            b.announce(n)
        results = await asyncio.gather(*(b.submit(i) for i in range(n)), return_exceptions=True)
    finally:
        await b.stop()
    return results, sizes


def test_concurrent_items_share_calls_up_to_max_batch_in_order():
    results, sizes = run(_gather(10, max_batch=4))
    assert results == [i * 10 for i in range(10)]
    assert sizes == [4, 4, 2]


def test_a_lone_item_does_not_wait_for_company():
    # nothing else announced: the first item runs at once although max_wait is 10 s. The bound is half the
    # window, generous for a loaded machine (the call itself takes milliseconds), and a batcher that held a
    # lone item for its window would still miss it by 5 s.
    start = time.monotonic()
    results, sizes = run(_gather(1, max_batch=8, announce=False, max_wait=10.0))
    elapsed = time.monotonic() - start
    assert results == [0] and sizes == [1]
    assert elapsed < 5.0, f"a lone item waited {elapsed:.1f} s of its 10 s window"


def test_a_failed_batch_fails_each_of_its_callers():
    results, _ = run(_gather(3, max_batch=8, fail=True))
    assert all(isinstance(r, ValueError) and "model exploded" in str(r) for r in results)


def _calls_at_once(concurrency: int, *, company_wait: float) -> tuple[list[int], int]:
    """Submit 8 announced items with max_batch 4; the results in order, and the most calls seen running at once.

    Each call waits up to ``company_wait`` seconds for a second call to run beside it, and goes on as soon
    as one does: calls that may overlap are given every chance to (an event, not a guess at timing).
    """
    lock, running, most = threading.Lock(), [0], [0]
    together = threading.Event()

    def fn(items):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            if running[0] >= 2:
                together.set()
        try:
            together.wait(company_wait)
            return [x * 10 for x in items]
        finally:
            with lock:
                running[0] -= 1

    async def main():
        b = Batcher(fn, max_batch=4, max_wait=5.0, name="test", concurrency=concurrency)
        b.start()
        try:
            b.announce(8)
            return await asyncio.gather(*(b.submit(i) for i in range(8)))
        finally:
            await b.stop()

    return run(main()), most[0]


def test_calls_run_side_by_side_up_to_concurrency():
    results, most = _calls_at_once(2, company_wait=20)  # returns as soon as the second call starts
    assert results == [i * 10 for i in range(8)] and most == 2


def test_one_call_at_a_time_by_default():
    # each call waits 1 s for company (2 s in all): time for a second call to start, were one allowed to
    results, most = _calls_at_once(1, company_wait=1.0)
    assert results == [i * 10 for i in range(8)] and most == 1


def test_concurrency_below_one_is_refused():
    with pytest.raises(ValueError, match="concurrency"):
        Batcher(lambda items: items, max_batch=2, concurrency=0)


def test_submit_before_start_is_an_error():
    b = Batcher(lambda items: items, max_batch=2)
    with pytest.raises(RuntimeError, match="start"):
        run(b.submit(1))


def test_service_batches_the_files_of_concurrent_requests_into_one_model_call(predictor, tmp_path):
    from defectlens.inspections import InspectionLog
    from defectlens.serve import ServeConfig
    from defectlens.serve.service import Service
    from defectlens.serve.uploads import Upload

    images = [png_bytes(i) for i in range(6)]

    async def main():
        with InspectionLog(tmp_path / "log.sqlite") as log:
            config = ServeConfig(batch_wait_ms=10_000, worker_threads=2, max_batch=8, inference_threads=1)
            service = Service(predictor, log, config=config)
            await service.start()
            try:
                requests = [[Upload(f"{i}.png", images[i]) for i in (j, j + 1)] for j in (0, 2, 4)]
                out = await asyncio.gather(
                    *(service.inspect(r, threshold=None, explain=False, source="api") for r in requests)
                )
            finally:
                await service.stop()
            return out, service.metrics.batch_size.collect()[0].samples, log.count()

    out, samples, logged = run(main())
    values = {s.name: s.value for s in samples}
    assert values["defectlens_batch_size_count"] == 1 and values["defectlens_batch_size_sum"] == 6
    assert logged == 6
    flat = [r for request in out for r in request]
    for img, r in zip(images, flat, strict=True):  # the same numbers as the Predictor's own path
        expected = predictor.predict(img)
        assert r["prediction"] == expected.prediction
        assert np.allclose(list(r["probabilities"].values()), list(expected.probabilities.values()), atol=1e-6)


def test_service_defaults_run_a_model_call_per_core_of_at_most_four_images(predictor, tmp_path):
    from defectlens.inference.backends import SLICE
    from defectlens.inspections import InspectionLog
    from defectlens.serve import ServeConfig
    from defectlens.serve.service import Service
    from defectlens.serve.uploads import Upload

    images = [png_bytes(i) for i in range(10)]
    config = ServeConfig(batch_wait_ms=2000, worker_threads=2, inference_threads=2)
    assert config.max_batch == SLICE == 4 and config.model_calls == 2

    async def main():
        with InspectionLog(tmp_path / "log.sqlite") as log:
            service = Service(predictor, log, config=config)
            await service.start()
            try:
                uploads = [Upload(f"{i}.png", img) for i, img in enumerate(images)]
                out = await service.inspect(uploads, threshold=None, explain=False, source="api")
            finally:
                await service.stop()
            return out, service.metrics.batch_size.collect()[0].samples

    out, samples = run(main())
    values = {s.name: s.value for s in samples}
    up_to_four = next(s.value for s in samples if s.name.endswith("_bucket") and s.labels["le"] == "4.0")
    assert values["defectlens_batch_size_sum"] == 10
    assert up_to_four == values["defectlens_batch_size_count"] >= 3  # every call had at most 4 images
    for img, r in zip(images, out, strict=True):
        expected = predictor.predict(img)
        assert r["prediction"] == expected.prediction
        assert np.allclose(list(r["probabilities"].values()), list(expected.probabilities.values()), atol=1e-6)
