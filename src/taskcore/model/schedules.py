"""Periodic schedules: a task submitted at each fire time of a cron expression
or of a fixed interval.

A schedule is a row; its ``next_fire_at`` says when it is due. Every worker
runs a scheduler (``taskcore.schedules.scheduler``) that fires the due ones:
each firing is a row unique on (schedule, fire time), stored in the
transaction that stores its task, so however many workers try, a fire time
makes one task.

Fire times: a cron expression (five fields, or six with seconds first) is
read in the schedule's time zone, so ``30 2 * * *`` in ``Europe/Berlin`` is
half past two there all year round; on the day clocks spring forward past
that time it fires at the first instant after the gap, and on the day they
fall back it fires once (the first 2:30). An interval (``every_s``) fires at
the multiples of ``every_s`` seconds since the Unix epoch (UTC), so every
worker computes the same times with no shared anchor and ``every_s=3600``
fires on the hour.

A fire time is *missed* when it is more than the grace (``TASKCORE_SCHEDULE_GRACE_S``)
in the past by the time a scheduler looks at it: nothing ran then.
``catch_up`` says what becomes of missed firings: ``skip`` (the default)
drops them, ``latest`` fires the most recent one of them unless a firing on
time follows it (one run for the gap, not two), ``all`` fires each of them,
at most ``catch_up_limit`` (the most recent). A firing that is late
by less than the grace is not missed and always fires. Time spent paused is
not missed: resuming starts from the next fire time.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from taskcore.errors import InvalidInput, TaskcoreError

MAX_NAME_LENGTH = 200
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
_NAME = re.compile(NAME_PATTERN)
MAX_CRON_LENGTH = 200
MAX_EVERY_S = 366 * 86_400
DEFAULT_CATCH_UP_LIMIT = 100
MAX_CATCH_UP_LIMIT = 1000
MAX_SCHEDULES = 1000  # per owner: each one is looked at by every worker's scheduler


class CatchUp(enum.StrEnum):
    SKIP = "skip"  # missed firings are dropped
    LATEST = "latest"  # the most recent missed firing fires, unless one on time follows it
    ALL = "all"  # every missed firing fires, up to catch_up_limit


class ScheduleNotFound(TaskcoreError):
    """No such schedule of the caller's (404)."""


class ScheduleConflict(TaskcoreError):
    """The schedule's name is taken, or it is declared in code (409)."""


class ScheduleReadOnly(TaskcoreError):
    """A schedule declared in code: only an admin may pause or resume it (403)."""


class ScheduleSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a schedule is declared with, in code (``HandlerRegistry.periodic``)
    or over HTTP (``POST /schedules``). Exactly one of ``cron`` and ``every_s``."""

    name: str
    type: str
    input: Any = None
    cron: str | None = None
    timezone: str = "UTC"
    every_s: int | None = None
    queue: str | None = None  # None: the handler's
    priority: int | None = None  # None: the default
    catch_up: CatchUp = CatchUp.SKIP
    catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT
    owner: str | None = None  # whose its tasks are; None for a system schedule
    system: bool = False  # declared in code


class Schedule(ScheduleSpec, frozen=True, kw_only=True):
    """A stored schedule and where it stands."""

    paused: bool = False
    retired_at: datetime | None = None  # declared in code once, no longer: it does not fire
    next_fire_at: datetime | None = None  # None: it has no fire time left
    last_fire_at: datetime | None = None
    error: str | None = None  # why its last firing made no task
    created_at: datetime
    updated_at: datetime

    @property
    def active(self) -> bool:
        return not self.paused and self.retired_at is None

    def visible_to(self, owner: str | None) -> bool:
        """``owner=None`` sees every schedule (auth off, or an admin); others
        see theirs and the system ones."""
        return owner is None or self.system or self.owner == owner


def check_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH or not _NAME.match(name):
        raise InvalidInput(
            f"a schedule's name is 1 to {MAX_NAME_LENGTH} letters, digits and . _ : @ -,"
            f" starting with a letter or digit; got {name!r}",
            name=name,
        )
    return name


def zone(name: object) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``UTC``), else ``InvalidInput``."""
    if not isinstance(name, str) or not name or len(name) > 64 or name.startswith(("/", ".")):
        raise InvalidInput(f"unknown time zone {name!r}", timezone=name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin", timezone=name
        ) from None


def check_timing(spec: ScheduleSpec) -> ScheduleSpec:
    """``spec`` if its name, timing and catch-up are well formed (the cron
    expression's syntax is the calendar's to check), else ``InvalidInput``."""
    check_name(spec.name)
    if (spec.cron is None) == (spec.every_s is None):
        raise InvalidInput("a schedule has either cron or every_s, not both and not neither")
    if spec.cron is not None and not (isinstance(spec.cron, str) and 0 < len(spec.cron) <= MAX_CRON_LENGTH):
        raise InvalidInput(f"cron is an expression of at most {MAX_CRON_LENGTH} characters", cron=spec.cron)
    if spec.every_s is not None and (type(spec.every_s) is not int or not 1 <= spec.every_s <= MAX_EVERY_S):
        raise InvalidInput(
            f"every_s is a whole number of seconds from 1 to {MAX_EVERY_S}", every_s=spec.every_s
        )
    zone(spec.timezone)
    if type(spec.catch_up_limit) is not int or not 1 <= spec.catch_up_limit <= MAX_CATCH_UP_LIMIT:
        raise InvalidInput(
            f"catch_up_limit is from 1 to {MAX_CATCH_UP_LIMIT}", catch_up_limit=spec.catch_up_limit
        )
    return spec


def same_timing(one: ScheduleSpec, other: ScheduleSpec) -> bool:
    """Whether both fire at the same times (so a stored next fire time still holds)."""
    return (one.cron, one.every_s, one.timezone) == (other.cron, other.every_s, other.timezone)
