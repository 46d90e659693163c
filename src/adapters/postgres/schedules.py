"""Schedules and their firings on PostgreSQL (migration 0021).

A firing locks its schedule's row (``SKIP LOCKED``: a scheduler that finds
it held leaves it to the holder), checks that the row is still due at the
time it was read, and stores each fire time's row in ``schedule_firings``
(unique on schedule and fire time) with its task, through the same INSERT
a submit uses, in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import RowMaker, dict_row, tuple_row
from psycopg.types.json import Jsonb

from taskcore.adapters.postgres.database import Connection, PostgresDatabase
from taskcore.adapters.postgres.inserts import add_in
from taskcore.adapters.postgres.sql import queries
from taskcore.model.schedules import CatchUp, Schedule, ScheduleConflict
from taskcore.model.task import NewTask
from taskcore.model.uniqueness import Added

FIRINGS_KEPT = timedelta(days=1)
_TIMES = ("retired_at", "next_fire_at", "last_fire_at", "created_at", "updated_at")


def schedule_row(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[Schedule]:
    as_dict = dict_row(cursor)

    def make(values: Sequence[Any]) -> Schedule:
        row = as_dict(values)
        row["catch_up"] = CatchUp(row["catch_up"])
        for name in _TIMES:
            if row[name] is not None:
                row[name] = row[name].astimezone(UTC)
        return Schedule(**row)

    return make


def _params(schedule: Schedule) -> dict[str, Any]:
    return {
        "name": schedule.name,
        "type": schedule.type,
        "input": Jsonb(schedule.input),
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "every_s": schedule.every_s,
        "queue": schedule.queue,
        "priority": schedule.priority,
        "catch_up": schedule.catch_up.value,
        "catch_up_limit": schedule.catch_up_limit,
        "owner": schedule.owner,
        "system": schedule.system,
        "paused": schedule.paused,
        "retired_at": schedule.retired_at,
        "next_fire_at": schedule.next_fire_at,
        "last_fire_at": schedule.last_fire_at,
        "error": schedule.error,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
    }


class PostgresSchedules:
    """``ScheduleStore`` and ``ScheduleFirings``; everything on the primary
    (the scheduler decides with what it reads, and a schedule is read right
    after it is changed)."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    async def add_schedule(self, schedule: Schedule) -> Schedule:
        added = await self._db.run(
            "add_schedule", _params(schedule), action="add a schedule", rows=schedule_row
        )
        if not added:
            raise ScheduleConflict(f"a schedule named {schedule.name!r} exists", name=schedule.name)
        return added[0]

    async def schedule(self, name: str) -> Schedule | None:
        found = await self._db.run(
            "get_schedule", {"name": name}, action="read a schedule", rows=schedule_row
        )
        return found[0] if found else None

    async def schedules(self, owner: str | None) -> list[Schedule]:
        return await self._db.run(
            "list_schedules", {"owner": owner}, action="list schedules", rows=schedule_row
        )

    async def remove_schedule(self, name: str) -> bool:
        return await self._db.run("remove_schedule", {"name": name}, action="remove a schedule") > 0

    async def pause_schedule(self, name: str, now: datetime) -> Schedule | None:
        found = await self._db.run(
            "pause_schedule", {"name": name, "now": now}, action="pause a schedule", rows=schedule_row
        )
        return found[0] if found else None

    async def resume_schedule(
        self, name: str, next_fire_at: datetime | None, now: datetime
    ) -> Schedule | None:
        params = {"name": name, "next_fire_at": next_fire_at, "now": now}
        found = await self._db.run("resume_schedule", params, action="resume a schedule", rows=schedule_row)
        return found[0] if found else None

    async def declare(self, schedules: Sequence[Schedule], now: datetime) -> None:
        async def declare(connection: Connection) -> None:
            for schedule in schedules:
                await connection.execute(queries["declare_schedule"], _params(schedule))
            names = [schedule.name for schedule in schedules]
            await connection.execute(queries["retire_schedules"], {"now": now, "names": names})

        await self._db.transaction(declare, action="declare the code's schedules")

    async def due(self, now: datetime, limit: int, types: Sequence[str] | None = None) -> list[Schedule]:
        params = {"now": now, "limit": limit, "types": None if types is None else list(types)}
        return await self._db.run("due_schedules", params, action="find due schedules", rows=schedule_row)

    async def next_due(self, types: Sequence[str] | None = None) -> datetime | None:
        params = {"types": None if types is None else list(types)}
        ((soonest,),) = await self._db.run(
            "next_due_schedule", params, action="find the next fire time", rows=tuple_row
        )
        return soonest.astimezone(UTC) if isinstance(soonest, datetime) else None

    async def fire(
        self,
        schedule: Schedule,
        firings: Sequence[tuple[datetime, NewTask]],
        *,
        next_fire_at: datetime | None,
        now: datetime,
        error: str | None = None,
    ) -> list[Added]:
        async def fire(connection: Connection) -> list[Added]:
            name = schedule.name
            locked = await connection.execute(
                queries["lock_due_schedule"], {"name": name, "expected": schedule.next_fire_at}
            )
            if await locked.fetchone() is None:
                return []
            added = []
            for at, new in firings:
                fresh = await connection.execute(queries["add_firing"], {"name": name, "fire_at": at})
                if await fresh.fetchone() is None:
                    continue
                one = await add_in(connection, new)
                await connection.execute(
                    queries["firing_task"], {"name": name, "fire_at": at, "task_id": one.task.id}
                )
                added.append(one)
            await connection.execute(
                queries["schedule_fired"],
                {
                    "name": name,
                    "next_fire_at": next_fire_at,
                    "last_fire_at": max((at for at, _ in firings), default=None),
                    "error": error,
                    "now": now,
                },
            )
            await connection.execute(queries["forget_firings"], {"name": name, "before": now - FIRINGS_KEPT})
            return added

        return await self._db.transaction(fire, action=f"fire schedule {schedule.name}")
