"""The task statements in memory, with the same guards as the SQL ones.

Implements ``TaskStore``, ``TaskFinder``, ``AttemptStore``,
``TransitionStore`` and ``DispatchLog`` over a ``MemoryDatabase``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.model.idempotency import AddedOnce, IdempotencyKey
from taskcore.model.query import TaskQuery
from taskcore.model.status import TaskStatus
from taskcore.model.task import NewTask, Task


class MemoryTasks:
    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    async def add(self, new: NewTask) -> Task:
        self.db.check()
        self.db.storable(new.input)
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
        claimed = task.claim(now, lease, alone=alone)
        self.db.tasks[task_id] = claimed
        return claimed

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
