"""Reporting nothing by default, and counting cache reads by wrapping the port.

``NoTelemetry`` implements every telemetry port of ``taskcore.ports.telemetry``,
so a program composing the core by hand needs no metrics. ``MeteredCache``
counts hits, misses and errors of any ``TaskCache`` by wrapping it, so the
code that uses the cache does not change.
"""

from __future__ import annotations

from datetime import timedelta

from taskcore.errors import CacheUnavailable
from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.model.task import Task
from taskcore.ports.cache import TaskCache
from taskcore.ports.telemetry import (
    CacheRead,
    CacheTelemetry,
    DeadLetterReason,
    Recovery,
    Verdict,
    WebhookAttempt,
)


class NoTelemetry:
    """Reports nothing."""

    def task_submitted(self, task_type: str, *, queue: str = DEFAULT_QUEUE) -> None:
        pass

    def task_deduplicated(self, task_type: str, *, queue: str = DEFAULT_QUEUE) -> None:
        pass

    def task_claimed(self, task_type: str, waited_s: float, *, queue: str = DEFAULT_QUEUE) -> None:
        pass

    def task_ran(self, task_type: str, seconds: float, *, queue: str = DEFAULT_QUEUE) -> None:
        pass

    def task_settled(self, task_type: str, verdict: Verdict, *, queue: str = DEFAULT_QUEUE) -> None:
        pass

    def message_dead_lettered(self, reason: DeadLetterReason) -> None:
        pass

    def tasks_in_flight(self, count: int) -> None:
        pass

    def tasks_recovered(self, action: Recovery, count: int) -> None:
        pass

    def tasks_pruned(self, count: int) -> None:
        pass

    def cache_read(self, result: CacheRead) -> None:
        pass

    def cache_write_failed(self) -> None:
        pass

    def webhook_attempted(self, outcome: WebhookAttempt) -> None:
        pass


class MeteredCache:
    """A ``TaskCache`` that reports each read's result and each failed write."""

    def __init__(self, cache: TaskCache, telemetry: CacheTelemetry) -> None:
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
