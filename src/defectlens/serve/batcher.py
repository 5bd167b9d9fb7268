"""Micro-batching: concurrent callers' items gathered into one call of a batch function.

The same small machine serves two purposes. The model batcher gathers preprocessed images from
concurrent requests into one ``Predictor.logits`` call (bounded by ``max_batch`` and ``max_wait``,
as LitServe's ``max_batch_size``/``batch_timeout`` and BentoML's adaptive batching do). The log
writer gathers the rows of concurrent requests into one SQLite transaction (group commit), so 16
clients cost one fsync rather than 16; each caller still gets its result only after the commit.

The batch function runs on a single worker thread, off the event loop. While it runs, new items
queue up, so under load the next batch is larger: batches adapt to the arrival rate. A first item
waits for company only while other items are announced (still being decoded) and at most
``max_wait`` seconds, so a lone request never pays the wait.
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
        name: thread name prefix of the worker thread.
        on_batch: called with each batch's size (metrics).
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int,
        max_wait: float = 0.0,
        name: str = "batch",
        on_batch: Callable[[int], None] | None = None,
    ):
        self._fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._on_batch = on_batch
        self._name = name
        self._announced = 0
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: list[asyncio.Future[R]] = []

    def start(self) -> None:
        """Start the gathering task (call from the running event loop)."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        """Stop gathering; items still queued get a CancelledError."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
            self._inflight = [fut for _, fut in batch]
            try:
                results = await loop.run_in_executor(self._executor, self._fn, [item for item, _ in batch])
            except Exception as exc:  # every caller of the failed batch hears why
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
