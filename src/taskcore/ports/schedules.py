"""Ports of periodic schedules: storing them, firing them, and reading cron
expressions (``model/schedules.py``).

A firing is unique on (schedule, fire time) in the store, and written in the
transaction that stores its task: that, not any coordination between
workers, is what makes a fire time one task.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Protocol

from taskcore.model.schedules import Schedule
from taskcore.model.task import NewTask
from taskcore.model.uniqueness import Added


class ScheduleStore(Protocol):
    """The schedules as the API and the worker's start-up change them."""

    async def add_schedule(self, schedule: Schedule) -> Schedule:
        """Store a new schedule; ``ScheduleConflict`` if its name is taken."""
        ...

    async def schedule(self, name: str) -> Schedule | None: ...

    async def schedules(self, owner: str | None) -> list[Schedule]:
        """``owner``'s schedules and the system ones, by name; every one for ``None``."""
        ...

    async def remove_schedule(self, name: str) -> bool:
        """``False`` if there is no such schedule. Its firings go with it."""
        ...

    async def declare(self, schedules: Sequence[Schedule], now: datetime) -> None:
        """The system schedules the code declares, in one transaction: each
        stored, or updated if it is stored (its ``next_fire_at`` is kept unless
        its timing changed or it was retired; ``paused`` is kept; a runtime
        schedule of the name is left as it is), and every other system
        schedule retired as of ``now``."""
        ...


class ScheduleSwitches(Protocol):
    """Pausing and resuming (the API)."""

    async def pause_schedule(self, name: str, now: datetime) -> Schedule | None:
        """Paused (again), or ``None`` if there is no such schedule."""
        ...

    async def resume_schedule(
        self, name: str, next_fire_at: datetime | None, now: datetime
    ) -> Schedule | None:
        """Not paused; a schedule that was paused fires next at ``next_fire_at``
        (the time it spent paused is not caught up); one that was not is left
        as it is. ``None`` if there is no such schedule."""
        ...


class ScheduleFirings(Protocol):
    """The scheduler's side, in every worker."""

    async def due(self, now: datetime, limit: int, types: Sequence[str] | None = None) -> list[Schedule]:
        """Up to ``limit`` active schedules whose next fire time is at or
        before ``now``, soonest first; only those of ``types`` when given
        (the task types a scheduler can make)."""
        ...

    async def next_due(self, types: Sequence[str] | None = None) -> datetime | None:
        """The soonest next fire time of an active schedule (of ``types``): when to look again."""
        ...

    async def fire(
        self,
        schedule: Schedule,
        firings: Sequence[tuple[datetime, NewTask]],
        *,
        next_fire_at: datetime | None,
        now: datetime,
        error: str | None = None,
    ) -> list[Added]:
        """Fire ``schedule`` as it was read (its ``next_fire_at``), atomically:
        if it is still active and still due at that time (no other scheduler
        fired it meanwhile), each fire time of ``firings`` not fired before
        stores its task (as ``TaskStore.add_unique``: a unique key held by an
        unfinished task gives that task) and its firing, and the schedule
        moves on to ``next_fire_at``, its ``last_fire_at`` the latest fire time
        and its ``error`` set to ``error``. Otherwise nothing changes and the
        answer is empty. Concurrent calls for one fire time store one task."""
        ...


class CronCalendar(Protocol):
    """Cron expressions, read by a library the core does not import."""

    def check(self, expression: str) -> str:
        """``expression`` if it is one this calendar reads (five fields, or six
        with seconds first), else ``InvalidInput`` saying what is wrong."""
        ...

    def after(self, expression: str, zone: tzinfo, moment: datetime) -> datetime | None:
        """The first fire time strictly after ``moment``, read in ``zone``; ``None`` if there is none."""
        ...

    def until(self, expression: str, zone: tzinfo, moment: datetime) -> datetime | None:
        """The last fire time at or before ``moment``, read in ``zone``; ``None`` if there is none."""
        ...
