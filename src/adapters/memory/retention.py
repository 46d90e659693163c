"""Retention in memory, with the same rules and order as the PostgreSQL statement."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.model.retention import PruneCutoffs
from taskcore.model.task import Task


class MemoryPruner:
    """``TaskPruner`` over a ``MemoryDatabase``. Nothing holds rows here, so
    there is nothing to skip."""

    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    async def prune(self, cutoffs: PruneCutoffs, limit: int) -> int:
        self.db.check()
        keyed = {task_id for _, task_id, _ in self.db.idempotency_keys.values()}
        finished: defaultdict[str, list[Task]] = defaultdict(list)
        for task in self.db.tasks.values():
            if task.finished_at is not None:
                finished[task.type].append(task)
        # Type by type, the type whose finished tasks go back furthest first.
        by_age = sorted(finished.values(), key=lambda tasks: min(_finished(task) for task in tasks))
        expired = [
            task
            for tasks in by_age
            for task in sorted(tasks, key=lambda task: (_finished(task), task.id))
            if cutoffs.expired(task) and task.id not in keyed
        ][:limit]
        for task in expired:
            del self.db.tasks[task.id]
            self.db.dispatched_at.pop(task.id, None)
        return len(expired)


def _finished(task: Task) -> datetime:
    assert task.finished_at is not None
    return task.finished_at
