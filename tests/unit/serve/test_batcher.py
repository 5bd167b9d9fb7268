"""The micro-batcher: concurrent items share one call, bounded by max_batch and max_wait; announced items are
waited for and withdrawn ones are not; errors reach every caller; stop cancels what is left."""

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


def _calls_at_once(concurrency: int | None, *, company_wait: float) -> tuple[list[int], int]:
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
        more = {} if concurrency is None else {"concurrency": concurrency}
        b = Batcher(fn, max_batch=4, max_wait=5.0, name="test", **more)
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
    results, most = _calls_at_once(None, company_wait=1.0)
    assert results == [i * 10 for i in range(8)] and most == 1


def test_concurrency_below_one_is_refused():
    with pytest.raises(ValueError, match="concurrency"):
        Batcher(lambda items: items, max_batch=2, concurrency=0)


def test_submit_before_start_is_an_error():
    b = Batcher(lambda items: items, max_batch=2)
    with pytest.raises(RuntimeError, match=r"^Batcher\.start\(\) was not called$"):
        run(b.submit(1))


#: a bound no correct run comes near (each of these finishes in milliseconds); only a batcher that holds an
#: item for its whole window, or forever, reaches it
BOUND = 30.0


async def within(aw, seconds: float = BOUND):
    return await asyncio.wait_for(aw, seconds)


async def turns(n: int = 10) -> None:
    """Let the event loop run ``n`` rounds: a queued item reaches the gathering task, and no clock is read."""
    for _ in range(n):
        await asyncio.sleep(0)


class Blocking:
    """A batch function whose calls block until ``release`` is set (except those of ``quick`` items, and a batch
    holding ``fail_on``, which raises); ``started`` is set once a blocking call runs."""

    def __init__(self, *, fail_on=None, quick=(), linger: float = 0.0):
        self.started, self.release = threading.Event(), threading.Event()
        self.sizes: list[int] = []
        self.finished: list[list[int]] = []
        self.fail_on, self.quick, self.linger = fail_on, set(quick), linger

    def __call__(self, items):
        self.sizes.append(len(items))
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        if self.quick.issuperset(items):  # returns at once, blocking nothing
            return [x * 10 for x in items]
        self.started.set()
        self.release.wait(BOUND)
        time.sleep(self.linger)
        self.finished.append(list(items))
        return [x * 10 for x in items]

    async def running(self) -> None:
        assert await asyncio.to_thread(self.started.wait, BOUND), "the batch function never ran"
        self.started.clear()


@pytest.mark.parametrize(
    ("wait", "sizes"),
    [
        # two announced, one here: the batch waits for the second (1 s is ample for a few loop rounds), one call
        ({"max_wait": 1.0}, [2]),
        # max_wait defaults to 0: the second, a few loop rounds later, gets its own call
        ({}, [1, 1]),
    ],
)
def test_a_first_item_waits_for_an_announced_one_only_within_max_wait(wait, sizes):
    async def main():
        fn = Blocking()
        fn.release.set()
        b = Batcher(fn, max_batch=8, **wait)
        b.start()
        try:
            b.announce(2)
            first = asyncio.ensure_future(b.submit(1))
            await turns()
            second = asyncio.ensure_future(b.submit(2))
            return await within(asyncio.gather(first, second)), fn.sizes
        finally:
            await b.stop()

    assert run(main()) == ([10, 20], sizes)


def test_max_wait_runs_out_when_an_announced_item_never_comes():
    async def main():
        fn = Blocking()
        fn.release.set()
        b = Batcher(fn, max_batch=8, max_wait=0.2)
        b.start()
        try:
            b.announce(2)  # the second one's decoding hangs and is never withdrawn
            return await within(b.submit(1)), fn.sizes
        finally:
            await b.stop()

    assert run(main()) == (10, [1])


@pytest.mark.parametrize("withdraw", [lambda b: b.withdraw(), lambda b: b.withdraw(1)])
def test_withdraw_counts_one_item_by_default(withdraw):
    # three announced, one withdrawn (its decoding failed), one submitted: one is still on its way, so the
    # first waits for it and they share a call
    async def main():
        fn = Blocking()
        fn.release.set()
        b = Batcher(fn, max_batch=8, max_wait=BOUND)
        b.start()
        try:
            b.announce(3)
            withdraw(b)
            first = asyncio.ensure_future(b.submit(1))
            await turns()
            assert fn.sizes == []  # still waiting for the third
            second = asyncio.ensure_future(b.submit(2))
            return await within(asyncio.gather(first, second)), fn.sizes
        finally:
            await b.stop()

    assert run(main()) == ([10, 20], [2])


@pytest.mark.parametrize(("announced", "withdrawn"), [(1, 0), (2, 1), (2, 5)])
def test_an_item_waits_for_no_one_once_every_announced_item_is_here_or_withdrawn(announced, withdrawn):
    # a window of 10 minutes: waiting for anything would run into the bound
    async def main():
        fn = Blocking()
        fn.release.set()
        b = Batcher(fn, max_batch=8, max_wait=600.0)
        b.start()
        try:
            b.announce(announced)
            b.withdraw(withdrawn)
            return await within(b.submit(1)), fn.sizes
        finally:
            await b.stop()

    assert run(main()) == (10, [1])


def test_on_batch_hears_each_call_size():
    heard = []

    async def main():
        b = Batcher(lambda items: [x * 10 for x in items], max_batch=4, max_wait=5.0, on_batch=heard.append)
        b.start()
        try:
            b.announce(10)
            return await within(asyncio.gather(*(b.submit(i) for i in range(10))))
        finally:
            await b.stop()

    assert run(main()) == [i * 10 for i in range(10)] and heard == [4, 4, 2]


@pytest.mark.parametrize(("name", "concurrency", "prefix"), [(None, 1, "batch"), ("model", 2, "model")])
def test_workers_and_tasks_carry_the_name(name, concurrency, prefix):
    # the names a thread dump, py-spy or a log line's threadName show
    threads = set()

    def fn(items):
        threads.add(threading.current_thread().name)
        return items

    async def main():
        named = {} if name is None else {"name": name}
        b = Batcher(fn, max_batch=1, concurrency=concurrency, **named)
        b.start()
        try:
            tasks = {t.get_name() for t in asyncio.all_tasks()}
            await within(b.submit(1))
        finally:
            await b.stop()
        return tasks

    tasks = run(main())
    assert {f"{prefix}-{k}" for k in range(concurrency)} <= tasks
    assert len(threads) == 1 and threads.pop().startswith(f"{prefix}_")


def test_every_caller_of_a_failed_batch_hears_why_and_the_batcher_goes_on():
    async def main():
        fn = Blocking(fail_on=2)
        fn.release.set()
        b = Batcher(fn, max_batch=8, max_wait=5.0)
        b.start()
        try:
            b.announce(3)
            failed = await within(asyncio.gather(*(b.submit(i) for i in (1, 2, 3)), return_exceptions=True))
            return failed, await within(b.submit(4)), fn.sizes
        finally:
            await b.stop()

    failed, after, sizes = run(main())
    assert [type(e) for e in failed] == [ValueError] * 3 and {str(e) for e in failed} == {"bad item 2"}
    assert failed[0] is failed[1] is failed[2]  # the one exception the call raised
    assert after == 40 and sizes == [3, 1]


def test_a_batch_function_returning_too_few_results_fails_its_callers_not_the_batcher():
    calls = []

    def short(items):
        calls.append(len(items))
        return [x * 10 for x in items][: 1 if len(items) > 1 else None]  # one result for a batch of three

    async def main():
        b = Batcher(short, max_batch=8, max_wait=5.0)
        b.start()
        try:
            b.announce(3)
            failed = await within(asyncio.gather(*(b.submit(i) for i in (1, 2, 3)), return_exceptions=True))
            return failed, await within(b.submit(4))
        finally:
            await b.stop()

    failed, after = run(main())
    assert [str(e) for e in failed] == ["the batch function returned 1 results for 3 items"] * 3
    assert after == 40 and calls == [3, 1]


def test_a_batch_of_callers_who_gave_up_is_skipped_and_the_batcher_goes_on():
    async def main():
        fn = Blocking()
        b = Batcher(fn, max_batch=8)
        b.start()
        try:
            busy = asyncio.ensure_future(b.submit(1))
            await fn.running()
            gave_up = asyncio.ensure_future(b.submit(2))
            await turns()  # queued behind the running call
            gave_up.cancel()
            await turns()
            fn.release.set()
            # when 1's result is set, the gathering task has already taken 2 off the queue and dropped it
            assert await within(busy) == 10
            return await within(b.submit(3)), gave_up.cancelled(), fn.sizes
        finally:
            await b.stop()

    assert run(main()) == (30, True, [1, 1])


def test_stop_cancels_the_running_and_the_queued_items_after_the_running_call_ends():
    # the log writer's commit must end before the log is closed: stop waits for the running call
    async def main():
        fn = Blocking(linger=0.3)
        b = Batcher(fn, max_batch=1)
        b.start()
        running = asyncio.ensure_future(b.submit(1))
        await fn.running()
        queued = asyncio.ensure_future(b.submit(2))
        await turns()
        fn.release.set()  # the call may end, but its result cannot arrive before stop (no await in between)
        await b.stop()
        finished = list(fn.finished)
        done, _ = await asyncio.wait({running, queued}, timeout=BOUND)
        return finished, running.cancelled(), queued.cancelled(), len(done)

    assert run(main()) == ([[1]], True, True, 2)


@pytest.mark.parametrize("other_fails", [False, True])
def test_stop_cancels_a_running_call_after_another_came_back(other_fails):
    # two calls side by side: 1's still runs when stop comes, 2's returned (or failed) before it
    async def main():
        fn = Blocking(fail_on=2) if other_fails else Blocking(quick={2})
        b = Batcher(fn, max_batch=1, concurrency=2)
        b.start()
        running = asyncio.ensure_future(b.submit(1))
        await fn.running()
        other = await within(asyncio.gather(b.submit(2), return_exceptions=True))
        fn.release.set()
        await b.stop()
        await asyncio.wait({running}, timeout=BOUND)
        return other[0], running.cancelled()

    other, cancelled = run(main())
    assert cancelled
    if other_fails:
        assert isinstance(other, ValueError) and str(other) == "bad item 2"
    else:
        assert other == 20


def test_stop_before_start_does_nothing():
    run(Batcher(lambda items: items, max_batch=2).stop())


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
