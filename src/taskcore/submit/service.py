"""What clients call: submit, read, cancel and retry.

This is the library's entry point (``container.service()``); waiting and
listing have their own objects (``TaskWatcher``, the ``TaskFinder`` port).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import msgspec

from taskcore.errors import InvalidInput, InvalidTransition, TaskNotFound
from taskcore.handlers.registry import HandlerRegistry
from taskcore.model.idempotency import IdempotencyConflict, IdempotencyKey, request_hash
from taskcore.model.task import DEFAULT_PRIORITY, NewTask, Task, check_priority
from taskcore.model.workflows import check_after
from taskcore.ports import Clock, SubmitTelemetry, TaskStore
from taskcore.submit.reads import TaskReads
from taskcore.telemetry import NoTelemetry
from taskcore.transitions.writer import Transitions

log = logging.getLogger("taskcore.service")

CAS_ATTEMPTS = 5
DEFAULT_IDEMPOTENCY_TTL = timedelta(days=1)


class TaskService:
    def __init__(
        self,
        *,
        tasks: TaskStore,
        transitions: Transitions,
        registry: HandlerRegistry,
        clock: Clock,
        idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL,
        telemetry: SubmitTelemetry | None = None,
    ) -> None:
        self._tasks = tasks
        self._transitions = transitions
        self._reads = TaskReads(tasks=tasks, cache=transitions.cache)
        self._registry = registry
        self._clock = clock
        self._idempotency_ttl = idempotency_ttl
        self._telemetry = telemetry or NoTelemetry()

    async def submit(
        self,
        task_type: str,
        input_data: Any,
        *,
        delay: timedelta | None = None,
        owner: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        queue: str | None = None,
        after: Sequence[int] = (),
        run_anyway: bool = False,
    ) -> Task:
        """Validate, store as PENDING, wake a worker, write through to the cache.

        Validation happens first, so a rejected request writes nothing. The row
        is committed before the message is published, and a publish failure
        does not fail the submit: the task is stored, its message unconfirmed,
        and the sweeper publishes it once the broker is back. ``priority`` (0
        to 9, higher first) orders the task among those waiting for a worker;
        ``queue`` sends it to another known queue than its handler's.
        ``after`` names tasks (visible to ``owner``) it runs after: it starts
        once they have ended, and is cancelled if one FAILED or was CANCELLED
        unless ``run_anyway`` (``model/workflows.py``).
        """
        new = self.new_task(
            task_type,
            input_data,
            delay=delay,
            owner=owner,
            priority=priority,
            queue=queue,
            after=await self._visible_parents(after, owner),
            run_anyway=run_anyway,
        )
        task = await self._tasks.add(new)
        await self._created(task)
        return task

    async def _created(self, task: Task) -> None:
        await self._transitions.created(task)
        self._telemetry.task_submitted(task.type, queue=task.queue)
        if task.blocked:  # the tasks it runs after may have ended already
            await self._transitions.settle(task, task.created_at)

    async def _visible_parents(self, after: Sequence[int], owner: str | None) -> tuple[int, ...]:
        """``after`` without repeats, each a task ``owner`` can see (else ``InvalidInput``)."""
        ids = check_after(after)
        for parent_id in ids:
            parent = await self._tasks.get(parent_id, fresh=True)
            if parent is None or not parent.visible_to(owner):
                raise InvalidInput(f"it runs after task {parent_id}, which does not exist", after=parent_id)
        return ids

    async def submit_once(
        self,
        task_type: str,
        input_data: Any,
        *,
        idempotency_key: str,
        delay: timedelta | None = None,
        owner: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        queue: str | None = None,
        after: Sequence[int] = (),
        run_anyway: bool = False,
    ) -> tuple[Task, bool]:
        """``submit`` under a client's Idempotency-Key: the first call creates
        the task, a retry with the same request returns it (``False``: not
        created now), a different request with the key is an
        ``IdempotencyConflict``."""
        new = self.new_task(
            task_type,
            input_data,
            delay=delay,
            owner=owner,
            priority=priority,
            queue=queue,
            after=await self._visible_parents(after, owner),
            run_anyway=run_anyway,
        )
        fingerprint = request_hash(
            task_type, new.input, priority=new.priority, queue=queue, after=new.after, run_anyway=run_anyway
        )
        key = IdempotencyKey(
            key=idempotency_key,
            request_hash=fingerprint,
            expired_before=new.created_at - self._idempotency_ttl,
        )
        added = await self._tasks.add_once(new, key)
        if not added.created:
            if added.request_hash != fingerprint:
                raise IdempotencyConflict(
                    "this Idempotency-Key was already used with a different request", key=idempotency_key
                )
            return added.task, False
        await self._created(added.task)
        return added.task, True

    def new_task(
        self,
        task_type: str,
        input_data: Any,
        *,
        delay: timedelta | None = None,
        owner: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        queue: str | None = None,
        after: tuple[int, ...] = (),
        run_anyway: bool = False,
        workflow_id: int | None = None,
        step: str | None = None,
    ) -> NewTask:
        """Validate a task to submit (its type, input, queue and priority) and
        build what the store needs; raises what a refused submit answers."""
        check_priority(priority)
        handler = self._registry.get(task_type)
        if queue is not None and queue not in self._registry.queues():
            known = ", ".join(self._registry.queues())
            raise InvalidInput(f"unknown queue {queue!r}; the known queues are {known}", queue=queue)
        value = handler.parse_input(input_data)
        concurrency_key, rate_key = handler.limit_keys(value)
        stored_input = msgspec.to_builtins(value)
        now = self._clock.now()
        return NewTask(
            type=task_type,
            input=stored_input,
            max_attempts=handler.max_attempts,
            run_at=now + delay if delay else now,
            created_at=now,
            owner=owner,
            priority=priority,
            queue=queue or handler.queue,
            concurrency_key=concurrency_key,
            rate_key=rate_key,
            after=after,
            run_anyway=run_anyway,
            workflow_id=workflow_id,
            step=step,
        )

    async def get(
        self, task_id: int, *, owner: str | None = None, min_version: int = 0, from_database: bool = False
    ) -> Task:
        """Cache first, the database on a miss: see ``TaskReads.get``."""
        return await self._reads.get(
            task_id, owner=owner, min_version=min_version, from_database=from_database
        )

    async def cancel(self, task_id: int, *, owner: str | None = None) -> Task:
        """PENDING tasks never run; a PROCESSING task's worker notices at its
        next heartbeat, stops the handler and discards its result."""
        return await self._transition(task_id, owner, lambda task: task.cancel(self._clock.now()))

    async def retry(self, task_id: int, *, owner: str | None = None) -> Task:
        """Run a FAILED or CANCELLED task again with a fresh set of attempts."""
        return await self._transition(task_id, owner, lambda task: task.retry(self._clock.now()))

    async def _transition(self, task_id: int, owner: str | None, change: Callable[[Task], Task]) -> Task:
        for _ in range(CAS_ATTEMPTS):
            current = await self._tasks.get(task_id, fresh=True)
            if current is None or not current.visible_to(owner):
                raise TaskNotFound(f"task {task_id} not found", task_id=task_id)
            changed = change(current)  # raises InvalidTransition
            if await self._transitions.record(changed):
                return changed
        raise InvalidTransition(f"task {task_id} keeps changing; try again", task_id=task_id)
