"""Retention in memory, with the same rules and order as the PostgreSQL statement."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.model.retention import PruneCutoffs
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task


class MemoryPruner:
    """``TaskPruner`` over a ``MemoryDatabase``. Nothing holds rows here, so
    there is nothing to skip."""

    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    async def prune(self, cutoffs: PruneCutoffs, limit: int) -> int:
        self.db.check()
        keyed = {used.task_id for used in self.db.idempotency_keys.values()}
        # What a blocked step runs after is kept: the step is settled by reading it.
        awaited = {
            parent
            for task in self.db.tasks.values()
            if task.status is TaskStatus.PENDING and task.blocked
            for parent in task.after
        }
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
            if cutoffs.expired(task) and task.id not in keyed and task.id not in awaited
        ][:limit]
        for task in expired:
            del self.db.tasks[task.id]
            self.db.dispatched_at.pop(task.id, None)
        return len(expired)


def _finished(task: Task) -> datetime:
    assert task.finished_at is not None
    return task.finished_at
