"""What the core reports about its work, for metrics: one small Protocol.

The core calls it where something countable happens (a submit, a claim, a
stored verdict, a dead letter, a sweep); an adapter turns the calls into
metrics (``taskcore.adapters.prometheus``). ``NoTelemetry`` is the default, so
a program composing the core by hand needs none. The calls are synchronous and
must neither block nor raise: they only update numbers in memory.

``MeteredCache`` counts hits, misses and errors of any ``TaskCache`` by
wrapping it, so the code that uses the cache does not change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, Protocol

from taskcore.errors import CacheUnavailable
from taskcore.ports import TaskCache
from taskcore.task import Task

Verdict = Literal["completed", "retried", "failed"]
"""A stored verdict: COMPLETED, PENDING again for a retry, or FAILED for good."""

Recovery = Literal["released", "failed", "redispatched"]
"""What a sweep did: a lapsed task handed back to PENDING, a lapsed task out of
attempts set FAILED, a PENDING task whose message was published again."""

DeadLetterReason = Literal["invalid_message", "unknown_task"]


class Telemetry(Protocol):
    def task_submitted(self, task_type: str) -> None:
        """A task was stored (an idempotent replay is not a new one)."""
        ...

    def task_claimed(self, task_type: str, waited_s: float) -> None:
        """A worker claimed an attempt ``waited_s`` after it was due (its ``run_at``)."""
        ...

    def task_ran(self, task_type: str, seconds: float) -> None:
        """A handler ran for ``seconds``, whatever its result."""
        ...

    def task_settled(self, task_type: str, verdict: Verdict) -> None:
        """A verdict was stored; a sweep that gives up on a task reports ``failed`` too."""
        ...

    def message_dead_lettered(self, reason: DeadLetterReason) -> None:
        """A message that names no task was moved to the dead-letter queue."""
        ...

    def tasks_in_flight(self, count: int) -> None:
        """How many tasks this worker runs now."""
        ...

    def tasks_recovered(self, action: Recovery, count: int) -> None:
        """A sweep found ``count`` tasks needing ``action``."""
        ...

    def cache_read(self, result: Literal["hit", "miss", "error"]) -> None: ...

    def cache_write_failed(self) -> None: ...


class NoTelemetry:
    """Reports nothing."""

    def task_submitted(self, task_type: str) -> None:
        pass

    def task_claimed(self, task_type: str, waited_s: float) -> None:
        pass

    def task_ran(self, task_type: str, seconds: float) -> None:
        pass

    def task_settled(self, task_type: str, verdict: Verdict) -> None:
        pass

    def message_dead_lettered(self, reason: DeadLetterReason) -> None:
        pass

    def tasks_in_flight(self, count: int) -> None:
        pass

    def tasks_recovered(self, action: Recovery, count: int) -> None:
        pass

    def cache_read(self, result: Literal["hit", "miss", "error"]) -> None:
        pass

    def cache_write_failed(self) -> None:
        pass


class MeteredCache:
    """A ``TaskCache`` that reports each read's result and each failed write."""

    def __init__(self, cache: TaskCache, telemetry: Telemetry) -> None:
        self._cache = cache
        self._telemetry = telemetry

    async def get(self, task_id: int) -> Task | None:
        try:
            task = await self._cache.get(task_id)
        except CacheUnavailable:
            self._telemetry.cache_read("error")
            raise
        self._telemetry.cache_read("miss" if task is None else "hit")
        return task

    async def put(self, task: Task, ttl: timedelta | None) -> None:
        try:
            await self._cache.put(task, ttl)
        except CacheUnavailable:
            self._telemetry.cache_write_failed()
            raise
