"""Reading one task the fast way: cache first, the database on a miss."""

from __future__ import annotations

from taskcore.errors import TaskNotFound
from taskcore.model.task import Task
from taskcore.ports import TaskReader
from taskcore.transitions.status_cache import StatusCache


class TaskReads:
    def __init__(self, *, tasks: TaskReader, cache: StatusCache) -> None:
        self._tasks = tasks
        self._cache = cache

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
            return _visible(cached, owner)
        task = await self._tasks.get(task_id)
        if task is None or task.version < min_version:
            # A replica may lag: just after the 201, or behind a notification.
            task = await self._tasks.get(task_id, fresh=True) or task
        if task is None:
            raise TaskNotFound(f"task {task_id} not found", task_id=task_id)
        await self._cache.refill(task)
        return _visible(task, owner)


def _visible(task: Task, owner: str | None) -> Task:
    if not task.visible_to(owner):
        raise TaskNotFound(f"task {task.id} not found", task_id=task.id)
    return task
