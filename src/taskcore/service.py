"""The use cases clients call: submit a task and read it back."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from taskcore.config import CoreConfig
from taskcore.errors import QueueUnavailable, TaskNotFound
from taskcore.messages import encode_task_message
from taskcore.ports import Clock, TaskCache, TaskQueue, TaskRepository
from taskcore.registry import HandlerRegistry
from taskcore.status_cache import StatusCache
from taskcore.task import NewTask, Task

log = logging.getLogger("taskcore.service")


class TaskService:
    def __init__(
        self,
        *,
        repository: TaskRepository,
        queue: TaskQueue,
        cache: TaskCache,
        clock: Clock,
        registry: HandlerRegistry,
        config: CoreConfig,
    ) -> None:
        self._repository = repository
        self._queue = queue
        self._cache = StatusCache(cache, config)
        self._clock = clock
        self._registry = registry

    @property
    def registry(self) -> HandlerRegistry:
        return self._registry

    async def submit(self, task_type: str, input_data: Any, *, delay: timedelta | None = None) -> Task:
        """Validate, store as PENDING, wake a worker, write through to the cache.

        Validation happens first, so a rejected request writes nothing. The row
        is committed before the message is published, and a publish failure
        does not fail the submit: the task is stored and the database, not the
        message, is what guarantees it runs.
        """
        handler = self._registry.get(task_type)
        stored_input = handler.normalise_input(input_data)
        now = self._clock.now()
        task = await self._repository.add(
            NewTask(
                type=task_type,
                input=stored_input,
                max_attempts=handler.max_attempts,
                run_at=now + delay if delay else now,
                created_at=now,
            )
        )
        try:
            await self._queue.publish(encode_task_message(task.id), delay=delay)
        except QueueUnavailable as exc:
            log.warning("task %s stored but not published yet: %s", task.id, exc)
        await self._cache.remember(task)
        return task

    async def get(self, task_id: int) -> Task:
        """Cache first; on a miss (or a cache outage) the database, then refill."""
        cached = await self._cache.lookup(task_id)
        if cached is not None:
            return cached
        task = await self._repository.get(task_id)
        if task is None:
            # A replica may not have the task yet just after its 201.
            task = await self._repository.get(task_id, fresh=True)
        if task is None:
            raise TaskNotFound(f"task {task_id} not found", task_id=task_id)
        await self._cache.remember(task)
        return task
