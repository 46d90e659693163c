"""Concurrency and rate limits on PostgreSQL (``taskcore.model.limits``).

A task with limits is claimed on its own, in a transaction: its row locked,
then, for a concurrency limit, a transaction-level advisory lock on its key
(so claims of one key take turns, and no other claim waits for them), the
key's running tasks counted, and the task parked when they are as many as
the limit; for a rate limit, the key's next start reserved in
``rate_limits``, and the task deferred to it when that is later than now.
Waking a parked task takes the same advisory lock, so a task parked while a
slot frees is seen by the wake that follows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from taskcore.adapters.postgres.database import Connection, PostgresDatabase
from taskcore.adapters.postgres.rows import task_row, task_with_extras_row
from taskcore.adapters.postgres.sql import queries
from taskcore.model.limits import LimitsOf, scope
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task


class PostgresLimitedClaims:
    """The claim of a task that has limits, and ``ConcurrencySlots``."""

    def __init__(
        self, database: PostgresDatabase, limits: LimitsOf, clock: Callable[[], datetime] | None = None
    ) -> None:
        """``clock``: the core's, read again once a claim has its key's lock
        (it may have waited for it), so ``started_at`` says when the task
        really got its slot."""
        self._db = database
        self._limits = limits
        self._clock = clock or (lambda: datetime.now(UTC))

    async def claim(self, task_id: int, now: datetime, lease: timedelta, alone: bool) -> Task | None:
        """``AttemptStore.claim`` of one limited task: the task as the claim left
        it (PROCESSING, or PENDING when deferred), or ``None``."""

        async def claim(connection: Connection) -> Task | None:
            async with connection.cursor(row_factory=task_with_extras_row) as cursor:
                await cursor.execute(queries["limited_lock"], {"id": task_id})
                found = await cursor.fetchone()
            if found is None:
                return None
            task, extras = found
            at = now
            if not task.is_due(now) or not task.may_claim(alone=alone) or extras["queue_paused"]:
                return None
            limits = self._limits(task.type)
            concurrency, rate = limits.concurrency, limits.rate
            if task.concurrency_key is not None and concurrency is not None:
                if await self._running(connection, task) >= concurrency:
                    await connection.execute(queries["limited_park"], {"id": task.id})
                    return None
                at = max(at, self._clock())
            if task.rate_key is not None and rate is not None and extras["rate_slot"] is None:
                slot = await self._reserve(connection, scope(task.type, task.rate_key), at, rate.interval)
                if slot > at:
                    return await self._store(connection, "limited_defer", task.defer(slot, at))
            claimed = task.claim(at, lease, alone=alone)
            return await self._store(connection, "limited_claim", claimed)

        return await self._db.transaction(claim, action=f"claim limited task {task_id}")

    async def _running(self, connection: Connection, task: Task) -> int:
        assert task.concurrency_key is not None
        await connection.execute(
            queries["limited_scope_lock"], {"scope": scope(task.type, task.concurrency_key)}
        )
        params = {"type": task.type, "key": task.concurrency_key}
        async with connection.cursor(row_factory=tuple_row) as cursor:
            await cursor.execute(queries["limited_running"], params)
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _reserve(
        self, connection: Connection, rate_scope: str, now: datetime, interval: timedelta
    ) -> datetime:
        params = {"scope": rate_scope, "now": now, "interval": interval}
        async with connection.cursor(row_factory=tuple_row) as cursor:
            await cursor.execute(queries["limited_reserve"], params)
            row = await cursor.fetchone()
        assert row is not None
        slot: datetime = row[0]
        return slot

    async def _store(self, connection: Connection, statement: str, task: Task) -> Task | None:
        params = {
            "id": task.id,
            "version": task.version,
            "updated_at": task.updated_at,
            "run_at": task.run_at,
            "attempts": task.attempts,
            "lease_until": task.lease_until,
            "started_at": task.started_at,
            "alone": task.alone,
            "attempt_log": Jsonb(task.attempt_log),
        }
        async with connection.cursor(row_factory=task_row) as cursor:
            await cursor.execute(queries[statement], params)
            return await cursor.fetchone()

    async def wake(self, task_type: str, key: str) -> list[Task]:
        async def wake(connection: Connection) -> list[Task]:
            await connection.execute(queries["limited_scope_lock"], {"scope": scope(task_type, key)})
            async with connection.cursor(row_factory=task_row) as cursor:
                await cursor.execute(queries["wake_parked"], {"type": task_type, "key": key})
                return [task for task in await cursor.fetchall() if task.status is TaskStatus.PENDING]

        return await self._db.transaction(wake, action=f"wake a task parked by {task_type}'s limit")
