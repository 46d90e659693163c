"""The wake-up census on PostgreSQL: one transaction under an advisory lock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from psycopg.rows import dict_row

from taskcore.adapters.postgres.database import Connection, PostgresDatabase
from taskcore.adapters.postgres.rows import task_row
from taskcore.adapters.postgres.sql import queries
from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.model.task import Task

# "wakeupcs" in ASCII: the key every taskcore sweeper agrees on for the census.
CENSUS_LOCK_KEY = 0x77616B6575706373


class PostgresCensus:
    """``WakeUpCensus`` on PostgreSQL. The lock is per transaction, so a
    sweeper that dies mid-census releases it with its connection."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

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
        async def census(connection: Connection) -> list[Task]:
            async with connection.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(queries["census_lock"], {"key": CENSUS_LOCK_KEY})
                locked = await cursor.fetchone()
                if not locked or not locked["locked"]:
                    return []  # another sweeper is counting
                window = {"read_at": read_at or now, "held_since": held_since, "queues": list(queues)}
                await cursor.execute(queries["census_counts"], window)
                counts = await cursor.fetchone()
                assert counts is not None
                deficit = counts["due"] - ready - counts["held"]
                await cursor.execute(queries["census_deficit"], {"deficit": deficit > 0, "now": now})
                state = await cursor.fetchone()
            since = state["deficit_since"] if state else None
            if deficit <= 0 or since is None or now - since < persisting:
                return []
            async with connection.cursor(row_factory=task_row) as tasks:
                params = {
                    "now": now,
                    "settled_before": settled_before,
                    "deficit_since": since,
                    "messages": deficit,
                    "limit": limit,
                    "queues": list(queues),
                }
                await tasks.execute(queries["take_missing_wake_ups"], params)
                found = await tasks.fetchall()
            if not found:
                await connection.execute(queries["census_restart"], {"now": now})
            return sorted(found, key=lambda task: (-task.priority, task.id))

        return await self._db.transaction(census, action="count the wake-ups")
