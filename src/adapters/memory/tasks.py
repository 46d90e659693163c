"""The task statements in memory, with the same guards as the SQL ones.

Implements ``TaskStore``, ``TaskFinder``, ``AttemptStore``,
``TransitionStore`` and ``DispatchLog`` over a ``MemoryDatabase``. The
unique-key rule is the database index's (``model/uniqueness.py``): no two
unfinished tasks of one type and owner with one key, checked by every add and
by every save that makes a finished task unfinished again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from taskcore.adapters.memory.database import MemoryDatabase, UsedKey
from taskcore.model.idempotency import AddedOnce, IdempotencyKey
from taskcore.model.query import TaskQuery
from taskcore.model.status import TaskStatus
from taskcore.model.task import NewTask, Task
from taskcore.model.uniqueness import Added, UniqueKeyTaken, holds_unique_key, unique_slot


class MemoryTasks:
    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    async def add(self, new: NewTask) -> Task:
        added = await self.add_unique(new)
        if not added.created:
            raise UniqueKeyTaken.adding(new.type, new.unique_key)
        return added.task

    async def add_unique(self, new: NewTask) -> Added:
        self.db.check()
        self.db.storable(new.input, new.unique_key)
        slot = None if new.unique_key is None else unique_slot(new.type, new.owner, new.unique_key)
        if slot is not None and (holder := self._holder(slot)) is not None:
            return Added(holder, created=False)
        task = Task.created(self.db.next_id(), new)
        self.db.tasks[task.id] = task
        if slot is not None:
            self.db.unique_keys[slot] = task.id
        return Added(task, created=True)

    async def add_once(self, new: NewTask, key: IdempotencyKey) -> AddedOnce:
        self.db.check()
        slot = (new.owner or "", key.key)
        used = self.db.idempotency_keys.get(slot)
        if used is not None and used.used_at >= key.expired_before:
            return AddedOnce(
                self.db.tasks[used.task_id],
                replayed=True,
                request_hash=used.request_hash,
                deduplicated=used.deduplicated,
            )
        added = await self.add_unique(new)
        deduplicated = not added.created
        self.db.idempotency_keys[slot] = UsedKey(
            key.request_hash, added.task.id, new.created_at, deduplicated
        )
        return AddedOnce(added.task, replayed=False, request_hash=key.request_hash, deduplicated=deduplicated)

    def _holder(self, slot: tuple[str, str, str]) -> Task | None:
        """The unfinished task holding this unique key, if any."""
        task = self.db.tasks.get(self.db.unique_keys.get(slot, 0))
        return task if task is not None and holds_unique_key(task) else None

    async def get(self, task_id: int, *, fresh: bool = False) -> Task | None:
        self.db.check()
        return self.db.tasks.get(task_id)

    async def find(self, query: TaskQuery, *, fresh: bool = False) -> list[Task]:
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
        if holds_unique_key(task) and not holds_unique_key(stored):
            slot = unique_slot(task.type, task.owner, task.unique_key or "")
            if self._holder(slot) is not None:
                raise UniqueKeyTaken.reviving(task)
            self.db.unique_keys[slot] = task.id
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
