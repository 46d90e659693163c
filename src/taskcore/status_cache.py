"""Fault-tolerant use of the cache port.

The cache only makes reads fast: when it fails, the task database answers and
the caller never sees an error. TTLs depend on the task's state, so finished
tasks leave the cache on their own.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from taskcore.config import CoreConfig
from taskcore.errors import CacheUnavailable
from taskcore.ports import TaskCache
from taskcore.task import Task

log = logging.getLogger("taskcore.cache")


class StatusCache:
    def __init__(self, cache: TaskCache, config: CoreConfig) -> None:
        self._cache = cache
        self._final_ttl = timedelta(seconds=config.finished_ttl_s)
        self._active_ttl = timedelta(seconds=config.active_ttl_s)

    async def remember(self, task: Task) -> None:
        ttl = self._final_ttl if task.is_final else self._active_ttl
        try:
            await self._cache.put(task, ttl)
        except CacheUnavailable as exc:
            log.debug("cache write skipped for task %s: %s", task.id, exc)

    async def lookup(self, task_id: int) -> Task | None:
        try:
            return await self._cache.get(task_id)
        except CacheUnavailable as exc:
            log.debug("cache read skipped for task %s: %s", task_id, exc)
            return None
