"""Schedules and their firings in memory, with the rules of the PostgreSQL
tables: a firing unique on (schedule, fire time), stored with its task."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.adapters.memory.tasks import MemoryTasks
from taskcore.model.schedules import Schedule, ScheduleConflict, same_timing
from taskcore.model.task import NewTask
from taskcore.model.uniqueness import Added


class MemorySchedules:
    """``ScheduleStore`` and ``ScheduleFirings`` over a ``MemoryDatabase``."""

    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database
        self._tasks = MemoryTasks(database)

    async def add_schedule(self, schedule: Schedule) -> Schedule:
        self.db.check()
        self.db.storable(schedule.input)
        if schedule.name in self.db.schedules:
            raise ScheduleConflict(f"a schedule named {schedule.name!r} exists", name=schedule.name)
        self.db.schedules[schedule.name] = schedule
        return schedule

    async def schedule(self, name: str) -> Schedule | None:
        self.db.check()
        return self.db.schedules.get(name)

    async def schedules(self, owner: str | None) -> list[Schedule]:
        self.db.check()
        return [
            self.db.schedules[name]
            for name in sorted(self.db.schedules)
            if self.db.schedules[name].visible_to(owner)
        ]

    async def remove_schedule(self, name: str) -> bool:
        self.db.check()
        if self.db.schedules.pop(name, None) is None:
            return False
        for key in [key for key in self.db.schedule_firings if key[0] == name]:
            del self.db.schedule_firings[key]
        return True

    async def pause_schedule(self, name: str, now: datetime) -> Schedule | None:
        return self._change(name, paused=True, updated_at=now)

    async def resume_schedule(
        self, name: str, next_fire_at: datetime | None, now: datetime
    ) -> Schedule | None:
        found = self.db.schedules.get(name)
        if found is not None and not found.paused:
            return found
        return self._change(name, paused=False, next_fire_at=next_fire_at, updated_at=now)

    def _change(self, name: str, **changes: object) -> Schedule | None:
        self.db.check()
        found = self.db.schedules.get(name)
        if found is None:
            return None
        changed = msgspec.structs.replace(found, **changes)
        self.db.schedules[name] = changed
        return changed

    async def declare(self, schedules: Sequence[Schedule], now: datetime) -> None:
        self.db.check()
        for schedule in schedules:
            self.db.storable(schedule.input)
        names = {schedule.name for schedule in schedules}
        for schedule in schedules:
            stored = self.db.schedules.get(schedule.name)
            if stored is None:
                self.db.schedules[schedule.name] = schedule
            elif stored.system:
                keep = same_timing(stored, schedule) and stored.retired_at is None
                self.db.schedules[schedule.name] = msgspec.structs.replace(
                    schedule,
                    paused=stored.paused,
                    next_fire_at=stored.next_fire_at if keep else schedule.next_fire_at,
                    last_fire_at=stored.last_fire_at,
                    error=stored.error,
                    created_at=stored.created_at,
                    updated_at=now,
                )
        for name, stored in list(self.db.schedules.items()):
            if stored.system and name not in names and stored.retired_at is None:
                self.db.schedules[name] = msgspec.structs.replace(stored, retired_at=now, updated_at=now)

    async def due(self, now: datetime, limit: int, types: Sequence[str] | None = None) -> list[Schedule]:
        self.db.check()
        due = [s for s in self._active(types) if s.next_fire_at is not None and s.next_fire_at <= now]
        due.sort(key=lambda s: (s.next_fire_at, s.name))
        return due[:limit]

    async def next_due(self, types: Sequence[str] | None = None) -> datetime | None:
        self.db.check()
        return min((s.next_fire_at for s in self._active(types) if s.next_fire_at is not None), default=None)

    def _active(self, types: Sequence[str] | None) -> list[Schedule]:
        return [s for s in self.db.schedules.values() if s.active and (types is None or s.type in types)]

    async def fire(
        self,
        schedule: Schedule,
        firings: Sequence[tuple[datetime, NewTask]],
        *,
        next_fire_at: datetime | None,
        now: datetime,
        error: str | None = None,
    ) -> list[Added]:
        self.db.check()
        stored = self.db.schedules.get(schedule.name)
        if stored is None or not stored.active or stored.next_fire_at != schedule.next_fire_at:
            return []
        for _, new in firings:  # all or nothing, as in one transaction
            self.db.storable(new.input, new.unique_key)
        added = []
        for at, new in firings:
            if (schedule.name, at) in self.db.schedule_firings:
                continue
            one = await self._tasks.add_unique(new)
            self.db.schedule_firings[(schedule.name, at)] = one.task.id
            added.append(one)
        last = max((at for at, _ in firings), default=None)
        self.db.schedules[schedule.name] = msgspec.structs.replace(
            stored,
            next_fire_at=next_fire_at,
            last_fire_at=last or stored.last_fire_at,
            error=error,
            updated_at=now,
        )
        return added
