"""Micro-batching: concurrent callers' items gathered into one call of a batch function.

The same small machine serves two purposes. The model batcher gathers preprocessed images from
concurrent requests into one ``Predictor.logits`` call (bounded by ``max_batch`` and ``max_wait``,
as LitServe's ``max_batch_size``/``batch_timeout`` and BentoML's adaptive batching do). The log
writer gathers the rows of concurrent requests into one SQLite transaction (group commit), so 16
clients cost one fsync rather than 16; each caller still gets its result only after the commit.

The batch function runs off the event loop on ``concurrency`` worker threads, each gathering its own
batch from the shared queue as soon as its previous call returns. While calls run, new items queue
up, so under load batches fill up to ``max_batch``: they adapt to the arrival rate. A first item
waits for company only while other items are announced (still being decoded) and at most
``max_wait`` seconds, so a lone request never pays the wait.

The service runs one model call per core this way rather than one batch split over every core: a
split batch ends with its slowest slice, and on cores that also decode uploads and parse requests
one slice is usually late, so the other core sat idle. With a call per core no core waits for
another; ``benchmarks/bench_serve.py`` records the machine's idle share under load (``cpu_idle``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Gather items submitted from coroutines into calls of ``fn(items) -> results``.

    Args:
        fn: maps a list of items to a list of results of the same length and order.
        max_batch: most items per call.
        max_wait: seconds a first item may wait for others that are announced but not yet here.
        name: thread name prefix of the worker threads.
        on_batch: called with each batch's size (metrics).
        concurrency: calls of ``fn`` that may run at once (worker threads, each with its own batch).
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int,
        max_wait: float = 0.0,
        name: str = "batch",
        on_batch: Callable[[int], None] | None = None,
        concurrency: int = 1,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._on_batch = on_batch
        self._name = name
        self._announced = 0
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self.concurrency = concurrency
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: set[asyncio.Future[R]] = set()

    def start(self) -> None:
        """Start the gathering tasks, one per worker thread (call from the running event loop)."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=self._name)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._loop(), name=f"{self._name}-{k}") for k in range(self.concurrency)]

    async def stop(self) -> None:
        """Stop gathering; items still queued get a CancelledError."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for fut in self._inflight:
            fut.cancel()
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()[1].cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def announce(self, n: int) -> None:
        """``n`` items are on their way (being decoded): a batch may wait a little for them."""
        self._announced += n

    def withdraw(self, n: int = 1) -> None:
        """Announced items that will not come after all (their decoding failed)."""
        self._announced = max(0, self._announced - n)

    async def submit(self, item: T) -> R:
        """Queue one item; returns its result once its batch has run."""
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not called")
        self.withdraw(1)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _gather(self) -> list[tuple[T, asyncio.Future[R]]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if self._announced <= 0 or remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [(item, fut) for item, fut in await self._gather() if not fut.cancelled()]
            if not batch:
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch))
            futures = {fut for _, fut in batch}
            self._inflight |= futures
            try:
                results = await loop.run_in_executor(self._executor, self._fn, [item for item, _ in batch])
                if len(results) != len(batch):  # else zip would end this loop and leave every caller waiting
                    raise RuntimeError(f"the batch function returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # every caller of the failed batch hears why
                self._inflight -= futures
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self._inflight -= futures
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
