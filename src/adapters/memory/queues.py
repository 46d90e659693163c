"""Paused queues and queue loads in memory (``MemoryTasks.claim`` reads the pauses)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.model.queues import QueueLoad
from taskcore.model.status import TaskStatus


class MemoryQueues:
    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    async def pause(self, queue: str, at: datetime) -> bool:
        self.db.check()
        if queue in self.db.paused_queues:
            return False
        self.db.paused_queues[queue] = at
        return True

    async def resume(self, queue: str, at: datetime) -> bool:
        self.db.check()
        return self.db.paused_queues.pop(queue, None) is not None

    async def paused(self) -> frozenset[str]:
        self.db.check()
        return frozenset(self.db.paused_queues)

    async def loads(self, now: datetime) -> dict[str, QueueLoad]:
        self.db.check()
        counts: Counter[tuple[str, str]] = Counter()
        for task in self.db.tasks.values():
            if task.status is TaskStatus.PROCESSING:
                counts[task.queue, "running"] += 1
            elif task.status is TaskStatus.PENDING:
                counts[task.queue, "waiting" if task.run_at <= now else "scheduled"] += 1
        names = {queue for queue, _ in counts}
        return {
            name: QueueLoad(
                running=counts[name, "running"],
                waiting=counts[name, "waiting"],
                scheduled=counts[name, "scheduled"],
            )
            for name in names
        }
