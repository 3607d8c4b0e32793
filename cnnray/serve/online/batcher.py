"""Continuous batching for the gateway: a batch is formed only when a replica slot is free.

Ray Serve's `@serve.batch` forms the next batch as soon as its wait expires, whether or not a replica
can take it; under load that sends many small batches that then queue (measured on 2 cores: a mean
batch of 1.5 requests at concurrency 32). Here each of `slots` dispatchers (one per replica) takes the
first waiting request only when its previous batch is answered, then everything else already waiting,
up to `max_size`, waiting at most `wait_s` for more: while every replica is busy, requests gather, and
a freed replica gets all of them at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[list[Any]], Awaitable[list[Any]]]


class ContinuousBatcher:
    """`await submit(item)` -> that item's result from `send(batch)` (an exception of `send` reaches each caller)."""

    def __init__(self, send: Send, max_size: int, wait_s: float, slots: int) -> None:
        self._send, self.max_size, self.wait_s = send, max_size, wait_s
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future]] = asyncio.Queue()
        self.batches = self.items = 0
        self._tasks = [asyncio.get_running_loop().create_task(self._dispatch()) for _ in range(max(1, slots))]

    async def submit(self, item: Any) -> Any:
        """Queue `item` and wait for its result."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    @property
    def mean_batch(self) -> float | None:
        """Mean requests per batch sent so far."""
        return self.items / self.batches if self.batches else None

    async def _collect(self) -> list[tuple[Any, asyncio.Future]]:
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while len(batch) < self.max_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _dispatch(self) -> None:
        while True:
            batch = await self._collect()
            live = [(item, f) for item, f in batch if not f.done()]  # a caller that gave up is not sent
            if not live:
                continue
            self.batches, self.items = self.batches + 1, self.items + len(live)
            try:
                results = await self._send([item for item, _ in live])
            except Exception as e:  # noqa: BLE001 - each caller gets the error of its batch
                for _, f in live:
                    if not f.done():
                        f.set_exception(e)
                continue
            for (_, f), r in zip(live, results):
                if not f.done():
                    f.set_result(r)
