"""When a schedule fires, and which firings a late scheduler makes (``model/schedules.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from taskcore.model.schedules import CatchUp, Schedule, ScheduleSpec, zone
from taskcore.ports.schedules import CronCalendar

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TICK = timedelta(microseconds=1)


class Plan(NamedTuple):
    """What a scheduler does with a due schedule: fire these times (oldest
    first), then wait for ``next_fire_at``."""

    fire_at: list[datetime]
    next_fire_at: datetime | None


class Timing:
    def __init__(self, calendar: CronCalendar) -> None:
        self._calendar = calendar

    def check(self, spec: ScheduleSpec) -> ScheduleSpec:
        """``spec``'s cron expression read, else ``InvalidInput``."""
        if spec.cron is not None:
            self._calendar.check(spec.cron)
        return spec

    def after(self, spec: ScheduleSpec, moment: datetime) -> datetime | None:
        """The first fire time strictly after ``moment``."""
        if spec.every_s is not None:
            period = timedelta(seconds=spec.every_s)
            return EPOCH + ((moment - EPOCH) // period + 1) * period
        assert spec.cron is not None
        found = self._calendar.after(spec.cron, zone(spec.timezone), moment)
        return None if found is None else found.astimezone(UTC)

    def until(self, spec: ScheduleSpec, moment: datetime) -> datetime | None:
        """The last fire time at or before ``moment``."""
        if spec.every_s is not None:
            period = timedelta(seconds=spec.every_s)
            return EPOCH + ((moment - EPOCH) // period) * period
        assert spec.cron is not None
        found = self._calendar.until(spec.cron, zone(spec.timezone), moment)
        return None if found is None else found.astimezone(UTC)

    def plan(self, schedule: Schedule, now: datetime, grace: timedelta) -> Plan:
        """The firings of ``schedule`` at ``now``: those since its next fire
        time that are late by at most ``grace``, and the missed ones its
        ``catch_up`` asks for; at most ``catch_up_limit``, the most recent."""
        due_from = schedule.next_fire_at
        if due_from is None or due_from > now:
            return Plan([], due_from)
        earliest = due_from if schedule.catch_up is CatchUp.ALL else max(due_from, now - grace)
        times = self._between(schedule, earliest, now, schedule.catch_up_limit)
        if not times and schedule.catch_up is CatchUp.LATEST:
            latest = self.until(schedule, now)
            if latest is not None and latest >= due_from:
                times = [latest]
        return Plan(times, self.after(schedule, now))

    def _between(
        self, spec: ScheduleSpec, earliest: datetime, latest: datetime, limit: int
    ) -> list[datetime]:
        """The fire times from ``earliest`` to ``latest`` (both included), the
        last ``limit`` of them, oldest first: walked back from ``latest``, so
        a schedule missed for a year costs ``limit`` steps, not a year's."""
        found: list[datetime] = []
        at = self.until(spec, latest)
        while at is not None and at >= earliest and len(found) < limit:
            found.append(at)
            at = self.until(spec, at - TICK)
        found.reverse()
        return found
