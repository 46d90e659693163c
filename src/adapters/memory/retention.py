"""Retention in memory, with the same rules as the PostgreSQL statement."""

from __future__ import annotations

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.model.retention import PruneCutoffs


class MemoryPruner:
    """``TaskPruner`` over a ``MemoryDatabase``. Nothing holds rows here, so
    there is nothing to skip."""

    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    async def prune(self, cutoffs: PruneCutoffs, limit: int) -> int:
        self.db.check()
        keyed = {task_id for _, task_id, _ in self.db.idempotency_keys.values()}
        expired = sorted(
            (task for task in self.db.tasks.values() if cutoffs.expired(task) and task.id not in keyed),
            key=lambda task: (task.finished_at, task.id),
        )
        for task in expired[:limit]:
            del self.db.tasks[task.id]
            self.db.dispatched_at.pop(task.id, None)
        return min(len(expired), limit)
