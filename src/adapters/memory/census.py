"""The wake-up census in memory, with the same rules as the PostgreSQL one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task


class MemoryCensus:
    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    def _confirmed_before(self, task: Task, before: datetime, due_by: datetime, queues: set[str]) -> bool:
        at = self.db.dispatched_at.get(task.id)
        if (
            task.status is not TaskStatus.PENDING
            or at is None
            or at >= before
            or task.queue not in queues
            or task.id in self.db.throttled  # parked: its wake-up was dropped on purpose
            or task.blocked  # waits for other tasks: it has no wake-up
        ):
            return False
        lateness = max(task.run_at - at, timedelta(0)) / 10
        return task.run_at + lateness < due_by

    async def take_missing(
        self,
        *,
        ready: int,
        now: datetime,
        settled_before: datetime,
        held_since: datetime,
        persisting: timedelta,
        limit: int,
        read_at: datetime | None = None,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> list[Task]:
        self.db.check()
        read_at = read_at or now
        tasks = self.db.tasks.values()
        named = set(queues)
        due = [task for task in tasks if self._confirmed_before(task, read_at, read_at, named)]
        # The tasks one message wakes share its confirmation time: a message is a distinct time.
        messages = len({self.db.dispatched_at[task.id] for task in due})
        held = sum(report.held for report in self.db.workers.values() if report.seen_at >= held_since)
        deficit = messages - ready - held
        if deficit <= 0:
            self.db.census_deficit_since = None
            return []
        since = self.db.census_deficit_since = self.db.census_deficit_since or now
        if now - since < persisting:
            return []
        # Confirmed before the deficit began: one woken during it is not picked again first.
        before = min(settled_before, since)
        missing = [task for task in tasks if self._confirmed_before(task, before, settled_before, named)]
        missing.sort(key=lambda task: (-task.priority, self.db.dispatched_at[task.id]))
        lost: set[datetime] = set()  # the messages missing: the first ``deficit`` of those times
        for task in missing:
            if len(lost) == deficit:
                break
            lost.add(self.db.dispatched_at[task.id])
        taken = [task for task in missing if self.db.dispatched_at[task.id] in lost][:limit]
        if not taken:  # all it counts came (or came back) during the deficit: it begins again now
            self.db.census_deficit_since = now
        for n, task in enumerate(taken, start=1):  # a microsecond apart: a message each, until confirmed
            self.db.dispatched_at[task.id] = now + timedelta(microseconds=n)
        return sorted(taken, key=lambda task: (-task.priority, task.id))
