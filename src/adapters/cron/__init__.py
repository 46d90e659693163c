"""Cron expressions read by cronsim (the parser healthchecks.io maintains):
five fields, or six with seconds first, in a time zone, with daylight saving
handled as cron does (a time skipped by the clock springing forward fires at
the first instant after the gap; a time repeated by it falling back fires once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from cronsim import CronSim, CronSimError

from taskcore.errors import InvalidInput

SECOND = timedelta(seconds=1)
_ANY_MOMENT = datetime(2000, 1, 1)


class CronsimCalendar:
    """``CronCalendar``."""

    def check(self, expression: str) -> str:
        if not isinstance(expression, str) or len(expression.split()) not in (5, 6):
            raise InvalidInput(
                f"invalid cron expression {expression!r}: five fields (minute hour day month weekday),"
                " or six with seconds first",
                cron=expression,
            )
        try:
            CronSim(expression, _ANY_MOMENT)
        except CronSimError as exc:
            raise InvalidInput(f"invalid cron expression {expression!r}: {exc}", cron=expression) from None
        return expression

    def after(self, expression: str, zone: tzinfo, moment: datetime) -> datetime | None:
        return next(CronSim(expression, moment.astimezone(zone)), None)

    def until(self, expression: str, zone: tzinfo, moment: datetime) -> datetime | None:
        # cronsim walks back from a whole second exclusively: from the next
        # whole second, the first time found is the last one at or before ``moment``.
        start = (moment.astimezone(UTC).replace(microsecond=0) + SECOND).astimezone(zone)
        return next(CronSim(expression, start, reverse=True), None)
