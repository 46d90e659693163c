"""A dict cache with TTLs and the version compare the Redis script does."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from taskcore.errors import CacheUnavailable
from taskcore.model.task import Task


class MemoryCache:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.entries: dict[int, tuple[Task, float | None]] = {}
        self.available = True
        self.hits = 0
        self.misses = 0
        self._monotonic = monotonic

    async def open(self) -> None:
        """Nothing to connect; present so every adapter has the same lifecycle."""

    async def close(self) -> None:
        """Nothing to release."""

    async def ping(self) -> None:
        self._check()

    def _check(self) -> None:
        if not self.available:
            raise CacheUnavailable("memory cache switched off")

    def _live(self, task_id: int) -> Task | None:
        entry = self.entries.get(task_id)
        if entry is None:
            return None
        task, expires = entry
        if expires is not None and expires <= self._monotonic():
            del self.entries[task_id]
            return None
        return task

    async def get(self, task_id: int) -> Task | None:
        self._check()
        task = self._live(task_id)
        if task is None:
            self.misses += 1
        else:
            self.hits += 1
        return task

    async def put(self, task: Task, ttl: timedelta | None) -> None:
        self._check()
        current = self._live(task.id)
        if current is not None and current.version >= task.version:
            return
        expires = None if ttl is None else self._monotonic() + ttl.total_seconds()
        self.entries[task.id] = (task, expires)

    def ttl(self, task_id: int) -> float | None:
        """Seconds left for an entry, as Redis's TTL would say."""
        entry = self.entries.get(task_id)
        if entry is None or entry[1] is None:
            return None
        return entry[1] - self._monotonic()
