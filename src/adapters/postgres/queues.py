"""Paused queues and queue loads on PostgreSQL (the claim reads ``queues`` itself)."""

from __future__ import annotations

from datetime import datetime

from psycopg.rows import dict_row, tuple_row

from taskcore.adapters.postgres.database import PostgresDatabase
from taskcore.model.queues import QueueLoad


class PostgresQueues:
    """``QueueSwitches`` and ``QueueLoads``. Pauses are read on the primary
    (they decide what runs); loads answer people, from the replica."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    async def pause(self, queue: str, at: datetime) -> bool:
        rows = await self._db.run(
            "pause_queue", {"name": queue, "at": at}, action=f"pause queue {queue}", rows=tuple_row
        )
        return bool(rows)

    async def resume(self, queue: str, at: datetime) -> bool:
        rows = await self._db.run(
            "resume_queue", {"name": queue, "at": at}, action=f"resume queue {queue}", rows=tuple_row
        )
        return bool(rows)

    async def paused(self) -> frozenset[str]:
        rows = await self._db.run("paused_queues", {}, action="read the paused queues", rows=tuple_row)
        return frozenset(name for (name,) in rows)

    async def loads(self, now: datetime) -> dict[str, QueueLoad]:
        rows = await self._db.run(
            "queue_loads", {"now": now}, action="count the queues' tasks", rows=dict_row, replica=True
        )
        return {
            row["queue"]: QueueLoad(
                running=row["running"], waiting=row["waiting"], scheduled=row["scheduled"]
            )
            for row in rows
        }
