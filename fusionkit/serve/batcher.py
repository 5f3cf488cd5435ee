"""Requests that arrive together are run as one batch: an asyncio collector that waits a few milliseconds for
company (up to a batch size) and runs the batch on the worker thread."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass


@dataclass
class BatchStats:
    """Counts for ``/health``: batches run, requests in them, and the largest batch."""

    batches: int = 0
    requests: int = 0
    largest: int = 0


class Batcher:
    """``await batcher.submit(item)`` -> the item's result from ``run(items)``, which returns one result or
    exception per item (an exception is raised to that item's caller only)."""

    def __init__(self, run: Callable[[list], list], executor: Executor, max_batch: int = 8, max_wait: float = 0.01):
        self.run, self.executor = run, executor
        self.max_batch, self.max_wait = max(1, max_batch), max(0.0, max_wait)
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, item):
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _collect(self) -> list:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - loop.time()
            if left <= 0 and self._queue.empty():
                break
            try:
                batch.append(self._queue.get_nowait() if left <= 0 else
                             await asyncio.wait_for(self._queue.get(), left))
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            items = [item for item, _ in batch]
            try:
                results = await loop.run_in_executor(self.executor, self.run, items)
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
                results = [exc] * len(items)
            self.stats.batches += 1
            self.stats.requests += len(items)
            self.stats.largest = max(self.stats.largest, len(items))
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue  # the client went away
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
