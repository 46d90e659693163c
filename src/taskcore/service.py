"""The use cases clients call: submit, read, list, cancel and re-queue tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from taskcore.config import CoreConfig
from taskcore.dispatch import Dispatcher
from taskcore.errors import InvalidTransition, TaskNotFound
from taskcore.idempotency import IdempotencyConflict, IdempotencyKey, request_hash
from taskcore.ports import Clock, TaskCache, TaskRepository
from taskcore.query import TaskQuery
from taskcore.registry import HandlerRegistry
from taskcore.status_cache import StatusCache
from taskcore.task import DEFAULT_PRIORITY, NewTask, Task, check_priority
from taskcore.telemetry import NoTelemetry, Telemetry

log = logging.getLogger("taskcore.service")

CAS_ATTEMPTS = 5


class TaskService:
    def __init__(
        self,
        *,
        repository: TaskRepository,
        dispatcher: Dispatcher,
        cache: TaskCache | StatusCache,
        clock: Clock,
        registry: HandlerRegistry,
        config: CoreConfig,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._repository = repository
        self._dispatcher = dispatcher
        self._cache = StatusCache.over(cache, config)
        self._clock = clock
        self._registry = registry
        self._config = config
        self._telemetry = telemetry or NoTelemetry()

    @property
    def registry(self) -> HandlerRegistry:
        return self._registry

    async def submit(
        self,
        task_type: str,
        input_data: Any,
        *,
        delay: timedelta | None = None,
        owner: str | None = None,
        priority: int = DEFAULT_PRIORITY,
    ) -> Task:
        """Validate, store as PENDING, wake a worker, write through to the cache.

        Validation happens first, so a rejected request writes nothing. The row
        is committed before the message is published, and a publish failure
        does not fail the submit: the task is stored, its message unconfirmed,
        and the sweeper publishes it once the broker is back. ``priority`` (0
        to 9, higher first) orders the task among those waiting for a worker.
        """
        task = await self._repository.add(self._new_task(task_type, input_data, delay, owner, priority))
        await self._publish_and_cache(task)
        self._telemetry.task_submitted(task.type)
        return task

    async def submit_once(
        self,
        task_type: str,
        input_data: Any,
        *,
        idempotency_key: str,
        delay: timedelta | None = None,
        owner: str | None = None,
        priority: int = DEFAULT_PRIORITY,
    ) -> tuple[Task, bool]:
        """``submit`` under a client's Idempotency-Key: the first call creates
        the task, a retry with the same request returns it (``False``: not
        created now), a different request with the key is an
        ``IdempotencyConflict``."""
        new = self._new_task(task_type, input_data, delay, owner, priority)
        fingerprint = request_hash(task_type, new.input, priority=new.priority)
        key = IdempotencyKey(
            key=idempotency_key,
            request_hash=fingerprint,
            expired_before=new.created_at - timedelta(seconds=self._config.idempotency_ttl_s),
        )
        added = await self._repository.add_once(new, key)
        if not added.created:
            if added.request_hash != fingerprint:
                raise IdempotencyConflict(
                    "this Idempotency-Key was already used with a different request", key=idempotency_key
                )
            return added.task, False
        await self._publish_and_cache(added.task)
        self._telemetry.task_submitted(added.task.type)
        return added.task, True

    async def _publish_and_cache(self, task: Task) -> None:
        """The wake-up and the write-through at the same time: both only follow
        the commit, and neither needs the other (a worker's newer state wins
        in the cache whichever lands first), so the submit waits for the
        slower of the two round trips instead of their sum."""
        caching = asyncio.ensure_future(self._cache.remember(task, announce=False))
        try:
            await self._dispatcher.dispatch(task)
        finally:
            await caching

    def _new_task(
        self, task_type: str, input_data: Any, delay: timedelta | None, owner: str | None, priority: int
    ) -> NewTask:
        check_priority(priority)
        handler = self._registry.get(task_type)
        stored_input = handler.normalise_input(input_data)
        now = self._clock.now()
        return NewTask(
            type=task_type,
            input=stored_input,
            max_attempts=handler.max_attempts,
            run_at=now + delay if delay else now,
            created_at=now,
            owner=owner,
            priority=priority,
        )

    async def get(
        self, task_id: int, *, owner: str | None = None, min_version: int = 0, from_database: bool = False
    ) -> Task:
        """Cache first; on a miss (or a cache outage) the database, then refill.

        With ``owner`` set, another owner's task is not found, exactly like a
        missing one, so ids reveal nothing about other callers' tasks. A cached
        entry older than ``min_version`` (a waiter was told a newer one exists)
        is passed over for the database; ``from_database`` skips the cache.
        """
        cached = None if from_database else await self._cache.lookup(task_id)
        if cached is not None and cached.version >= min_version:
            return self._visible(cached, owner)
        task = await self._repository.get(task_id)
        if task is None or task.version < min_version:
            # A replica may lag: just after the 201, or behind a notification.
            task = await self._repository.get(task_id, fresh=True) or task
        if task is None:
            raise TaskNotFound(f"task {task_id} not found", task_id=task_id)
        await self._cache.refill(task)
        return self._visible(task, owner)

    @staticmethod
    def _visible(task: Task, owner: str | None) -> Task:
        if not task.visible_to(owner):
            raise TaskNotFound(f"task {task.id} not found", task_id=task.id)
        return task

    async def find(self, query: TaskQuery) -> list[Task]:
        return await self._repository.find(query)

    async def cancel(self, task_id: int, *, owner: str | None = None) -> Task:
        """PENDING tasks never run; a PROCESSING task's worker notices at its
        next heartbeat, stops the handler and discards its result."""
        return await self._transition(task_id, owner, lambda task: task.cancel(self._clock.now()))

    async def requeue(self, task_id: int, *, owner: str | None = None) -> Task:
        """Run a FAILED or CANCELLED task again with a fresh set of attempts."""
        task = await self._transition(task_id, owner, lambda task: task.requeue(self._clock.now()))
        await self._dispatcher.dispatch(task)
        return task

    async def _transition(self, task_id: int, owner: str | None, change: Callable[[Task], Task]) -> Task:
        for _ in range(CAS_ATTEMPTS):
            current = await self._repository.get(task_id, fresh=True)
            if current is None or not current.visible_to(owner):
                raise TaskNotFound(f"task {task_id} not found", task_id=task_id)
            changed = change(current)  # raises InvalidTransition
            if await self._repository.save(changed):
                await self._cache.remember(changed)
                return changed
        raise InvalidTransition(f"task {task_id} keeps changing; try again", task_id=task_id)
