"""Coalescing concurrent calls into batches: one round trip for many callers.

Calls made while a batch is on its way form the next batch, so an idle
system pays no delay (a lone call is a batch of one, sent at once) and a busy
one sends one statement or pipeline per round trip instead of one per call.

That alone leaves batches small when the round trip is short: on a busy
machine, most of a statement's cost (its commit, the wake-ups, the driver's
work per statement) is then paid for one or two rows. So a coalescer may
also *linger*: when calls have been arriving faster than one per ``linger_s``
(a moving average of the gaps between them), it waits ``linger_s`` before
sending, and the calls of that moment ride along. This is group commit as
databases do it (PostgreSQL's ``commit_delay`` waits only when other
transactions are active): a few milliseconds of latency bought back many
times in CPU, and only under load; a call after a quiet spell is sent at once.

Every caller still returns only once its own item is done, with its own
result or error, so batching changes no guarantee of the call it wraps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


_GAP_WEIGHT = 0.2  # of the newest gap in the moving average: about the last ten calls count
_LONGEST_GAP_S = 1.0  # a longer pause counts as this, so the average recovers quickly


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 256,
        linger_s: float = 0.0,
        name: str = "taskcore-batch",
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._name = name
        self._queued: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._gap_s = _LONGEST_GAP_S  # moving average of the time between calls
        self._last_call: float | None = None

    @property
    def busy(self) -> bool:
        """Calls come faster than one per ``linger_s``: waiting that long gathers more."""
        return self._gap_s < self._linger_s

    async def call(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._linger_s:
            now = loop.time()
            if self._last_call is not None:
                gap = min(now - self._last_call, _LONGEST_GAP_S)
                self._gap_s += (gap - self._gap_s) * _GAP_WEIGHT
            self._last_call = now
        done: asyncio.Future[R] = loop.create_future()
        self._queued.append((item, done))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain(), name=self._name)
        return await done

    async def _drain(self) -> None:
        while self._queued:
            if self.busy and len(self._queued) < self._max_batch:
                await asyncio.sleep(self._linger_s)
            batch = self._queued[: self._max_batch]
            del self._queued[: self._max_batch]
            try:
                outcomes = await self._run_batch([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed: each caller gets the error
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():  # its caller was cancelled
                    continue
                if isinstance(outcome, BaseException):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)
