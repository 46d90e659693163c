"""The sweeper's statements on PostgreSQL: lapsed leases, unconfirmed wake-ups, expired keys."""

from __future__ import annotations

from datetime import datetime

from taskcore.adapters.postgres.database import PostgresDatabase
from taskcore.adapters.postgres.rows import task_row
from taskcore.model.task import Task


class PostgresRecovery:
    """``RecoveryStore`` on PostgreSQL; every read is on the primary, since it decides transitions."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    async def lapsed(self, now: datetime, limit: int) -> list[Task]:
        params = {"now": now, "limit": limit}
        return await self._db.run("lapsed_tasks", params, action="find lapsed leases", rows=task_row)

    async def undispatched(
        self, *, unconfirmed_before: datetime, overdue_before: datetime, limit: int
    ) -> list[Task]:
        params = {"unconfirmed_before": unconfirmed_before, "overdue_before": overdue_before, "limit": limit}
        return await self._db.run(
            "undispatched_tasks", params, action="find undispatched tasks", rows=task_row
        )

    async def forget_idempotency_keys(self, used_before: datetime, limit: int) -> int:
        params = {"used_before": used_before, "limit": limit}
        return await self._db.run("forget_idempotency_keys", params, action="forget expired idempotency keys")
