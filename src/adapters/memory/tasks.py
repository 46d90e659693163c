"""The task statements in memory, with the same guards as the SQL ones.

Implements ``TaskStore``, ``TaskFinder``, ``AttemptStore``,
``TransitionStore`` and ``DispatchLog`` over a ``MemoryDatabase``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.errors import InvalidInput
from taskcore.model.idempotency import AddedOnce, IdempotencyKey
from taskcore.model.limits import LimitsOf, no_limits, scope
from taskcore.model.query import TaskQuery
from taskcore.model.status import TaskStatus
from taskcore.model.task import NewTask, Task


class MemoryTasks:
    def __init__(self, database: MemoryDatabase, *, limits: LimitsOf = no_limits) -> None:
        """``limits``: each type's concurrency and rate limits, as the claim applies them."""
        self.db = database
        self._limits = limits

    async def add(self, new: NewTask) -> Task:
        self.db.check()
        self.db.storable(new.input)
        if missing := [task_id for task_id in new.after if task_id not in self.db.tasks]:
            raise InvalidInput(f"it runs after task {missing[0]}, which does not exist", after=missing[0])
        task = Task.created(self.db.next_id(), new)
        self.db.tasks[task.id] = task
        return task

    async def add_once(self, new: NewTask, key: IdempotencyKey) -> AddedOnce:
        self.db.check()
        slot = (new.owner or "", key.key)
        used = self.db.idempotency_keys.get(slot)
        if used is not None and used[2] >= key.expired_before:
            request_hash, task_id, _ = used
            return AddedOnce(self.db.tasks[task_id], created=False, request_hash=request_hash)
        task = await self.add(new)
        self.db.idempotency_keys[slot] = (key.request_hash, task.id, new.created_at)
        return AddedOnce(task, created=True, request_hash=key.request_hash)

    async def get(self, task_id: int, *, fresh: bool = False) -> Task | None:
        self.db.check()
        return self.db.tasks.get(task_id)

    async def find(self, query: TaskQuery) -> list[Task]:
        self.db.check()
        found = [t for t in self.db.tasks.values() if query.matches(t)]
        found.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        return found[: query.limit]

    async def claim(
        self, task_id: int, now: datetime, lease: timedelta, *, alone: bool = False
    ) -> Task | None:
        self.db.check()
        task = self.db.tasks.get(task_id)
        if (
            task is None
            or not task.is_due(now)
            or not task.may_claim(alone=alone)
            or task.queue in self.db.paused_queues
        ):
            return None
        limits = self._limits(task.type)
        if task.concurrency_key is not None and limits.concurrency is not None:
            running = sum(
                1
                for other in self.db.tasks.values()
                if other.status is TaskStatus.PROCESSING
                and other.type == task.type
                and other.concurrency_key == task.concurrency_key
            )
            if running >= limits.concurrency:
                self.db.throttled.add(task_id)  # parked until a slot frees
                self.db.rate_slots.pop(task_id, None)  # a reserved start it could not use lapses
                return None
        if task.rate_key is not None and limits.rate is not None and task_id not in self.db.rate_slots:
            slot = self._reserve(scope(task.type, task.rate_key), now, limits.rate.interval)
            if slot > now:
                deferred = task.defer(slot, now)
                self.db.tasks[task_id] = deferred
                self.db.dispatched_at.pop(task_id, None)
                self.db.rate_slots[task_id] = slot
                return deferred
        claimed = task.claim(now, lease, alone=alone)
        self.db.tasks[task_id] = claimed
        self.db.throttled.discard(task_id)
        self.db.rate_slots.pop(task_id, None)
        return claimed

    def _reserve(self, rate_scope: str, now: datetime, interval: timedelta) -> datetime:
        """The next start of ``rate_scope`` (now, or when it is free), and the one after it."""
        slot = max(self.db.rate_next.get(rate_scope, now), now)
        self.db.rate_next[rate_scope] = slot + interval
        return slot

    async def wake(self, task_type: str, key: str) -> list[Task]:
        self.db.check()
        parked = [
            task
            for task_id in self.db.throttled
            if (task := self.db.tasks.get(task_id)) is not None
            and task.status is TaskStatus.PENDING
            and (task.type, task.concurrency_key) == (task_type, key)
        ]
        if not parked:
            return []
        woken = min(parked, key=lambda task: (-task.priority, task.id))
        self.db.throttled.discard(woken.id)
        self.db.dispatched_at.pop(woken.id, None)
        return [woken]

    async def save(self, task: Task) -> bool:
        self.db.check()
        self.db.storable(task.result, task.error)
        stored = self.db.tasks.get(task.id)
        if stored is None or stored.version != task.version - 1:
            return False
        self.db.tasks[task.id] = task
        if task.status is TaskStatus.PENDING:
            self.db.dispatched_at.pop(task.id, None)
        return True

    async def renew_lease(self, task_id: int, version: int, lease_until: datetime) -> bool:
        self.db.check()
        task = self.db.tasks.get(task_id)
        if task is None or task.version != version or task.status is not TaskStatus.PROCESSING:
            return False
        self.db.tasks[task_id] = msgspec.structs.replace(task, lease_until=lease_until)
        return True

    async def mark_dispatched(self, task_ids: Sequence[int], at: datetime) -> None:
        self.db.check()
        for task_id in task_ids:
            task = self.db.tasks.get(task_id)
            if task is not None and task.status is TaskStatus.PENDING:
                self.db.dispatched_at[task_id] = at
