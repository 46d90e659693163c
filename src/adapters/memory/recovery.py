"""The sweeper's queries in memory: lapsed leases, unconfirmed wake-ups, expired keys."""

from __future__ import annotations

from datetime import datetime

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task


class MemoryRecovery:
    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    async def lapsed(self, now: datetime, limit: int) -> list[Task]:
        self.db.check()
        found = [
            t
            for t in self.db.tasks.values()
            if t.status is TaskStatus.PROCESSING and t.lease_until is not None and t.lease_until < now
        ]
        found.sort(key=lambda t: t.lease_until or now)
        return found[:limit]

    async def undispatched(
        self, *, unconfirmed_before: datetime, overdue_before: datetime, limit: int
    ) -> list[Task]:
        self.db.check()
        found = []
        for task in self.db.tasks.values():
            if task.status is not TaskStatus.PENDING or task.blocked:
                continue
            at = self.db.dispatched_at.get(task.id)
            if (at is None and task.updated_at < unconfirmed_before) or (
                at is not None and at < overdue_before and task.run_at < overdue_before
            ):
                found.append(task)
        found.sort(key=lambda t: t.updated_at)
        return found[:limit]

    async def forget_idempotency_keys(self, used_before: datetime, limit: int) -> int:
        self.db.check()
        keys = self.db.idempotency_keys
        expired = sorted(
            (slot for slot, used in keys.items() if used.used_at < used_before),
            key=lambda slot: keys[slot].used_at,
        )
        for slot in expired[:limit]:
            del keys[slot]
        return min(len(expired), limit)
