"""Workflows in memory, with the same rules as the PostgreSQL statements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.adapters.memory.tasks import MemoryTasks
from taskcore.model.status import TaskStatus
from taskcore.model.task import NewTask, Task
from taskcore.model.workflows import StoredWorkflow


class MemoryWorkflows:
    """``WorkflowStore`` and ``Dependencies`` over a ``MemoryDatabase``."""

    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database
        self._tasks = MemoryTasks(database)

    async def add_workflow(
        self,
        *,
        name: str | None,
        owner: str | None,
        created_at: datetime,
        steps: Sequence[NewTask],
        after: Sequence[Sequence[int]],
    ) -> StoredWorkflow:
        self.db.check()
        for new in steps:  # all or nothing: refuse before storing any
            self.db.storable(new.input)
        workflow_id = self.db.next_workflow_id()
        self.db.workflows[workflow_id] = (name, owner, created_at)
        stored: list[Task] = []
        for new, parents in zip(steps, after, strict=True):
            placed = msgspec.structs.replace(
                new, workflow_id=workflow_id, after=tuple(stored[index].id for index in parents)
            )
            stored.append(await self._tasks.add(placed))
        return StoredWorkflow(id=workflow_id, name=name, owner=owner, created_at=created_at, steps=stored)

    async def workflow(self, workflow_id: int) -> StoredWorkflow | None:
        self.db.check()
        if workflow_id not in self.db.workflows:
            return None
        name, owner, created_at = self.db.workflows[workflow_id]
        steps = sorted(
            (task for task in self.db.tasks.values() if task.workflow_id == workflow_id), key=lambda t: t.id
        )
        return StoredWorkflow(id=workflow_id, name=name, owner=owner, created_at=created_at, steps=steps)

    async def parents(self, task: Task) -> list[Task]:
        self.db.check()
        return [self.db.tasks[task_id] for task_id in task.after if task_id in self.db.tasks]

    async def blocked_after(self, parent_id: int) -> list[Task]:
        self.db.check()
        return [task for task in self._blocked() if parent_id in task.after]

    async def stalled(self, limit: int) -> list[Task]:
        self.db.check()
        found = []
        for task in self._blocked():
            parents = [self.db.tasks[i] for i in task.after if i in self.db.tasks]
            if all(parent.is_final for parent in parents) or any(
                parent.status in (TaskStatus.FAILED, TaskStatus.CANCELLED) for parent in parents
            ):
                found.append(task)
        found.sort(key=lambda task: task.updated_at)
        return found[:limit]

    def _blocked(self) -> list[Task]:
        return [task for task in self.db.tasks.values() if task.status is TaskStatus.PENDING and task.blocked]
