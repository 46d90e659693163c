"""Periodic schedules on the memory adapters with a clock the test moves:
fire times (intervals, cron in a time zone across DST), catch-up, the
scheduler's firings, declaring the code's schedules, and the registry's
``periodic``. The HTTP side is in test_schedules_http.py; many workers on
PostgreSQL in tests/integration/e2e/test_schedules.py."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from taskcore import HandlerRegistry
from taskcore.adapters.cron import CronsimCalendar
from taskcore.adapters.memory import MemorySchedules
from taskcore.errors import HandlerRegistrationError, InvalidInput
from taskcore.model.schedules import CatchUp, Schedule, ScheduleSpec
from taskcore.schedules.admin import ScheduleAdmin
from taskcore.schedules.scheduler import MAX_SLEEP_S, Scheduler
from taskcore.schedules.timing import Timing
from tests.core import Core, LoopClock, ManualClock, build_core, reverse_registry

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
GRACE = timedelta(seconds=60)
timing = Timing(CronsimCalendar())


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def spec(**fields: Any) -> ScheduleSpec:
    values: dict[str, Any] = {"name": "tick", "type": "reverse", "input": "abc", **fields}
    return ScheduleSpec(**values)


def stored(next_fire_at: datetime, **fields: Any) -> Schedule:
    values: dict[str, Any] = {"name": "tick", "type": "reverse", "input": "abc", "every_s": 60, **fields}
    return Schedule(**values, next_fire_at=next_fire_at, created_at=T0, updated_at=T0)


# -- fire times --------------------------------------------------------------------------------


def test_an_interval_fires_on_multiples_of_it_since_the_epoch() -> None:
    every = spec(every_s=30)
    assert timing.after(every, utc(2026, 1, 1, 0, 0, 10)) == utc(2026, 1, 1, 0, 0, 30)
    assert timing.after(every, utc(2026, 1, 1, 0, 0, 30)) == utc(2026, 1, 1, 0, 1, 0)
    assert timing.until(every, utc(2026, 1, 1, 0, 0, 30)) == utc(2026, 1, 1, 0, 0, 30)
    assert timing.until(every, utc(2026, 1, 1, 0, 0, 59, 999999)) == utc(2026, 1, 1, 0, 0, 30)
    hourly = spec(every_s=3600)
    assert timing.after(hourly, utc(2026, 3, 29, 0, 59, 59)) == utc(2026, 3, 29, 1)


def test_cron_is_read_in_the_schedules_time_zone() -> None:
    berlin = spec(cron="30 2 * * *", timezone="Europe/Berlin")
    # Winter: UTC+1; summer: UTC+2.
    assert timing.after(berlin, utc(2026, 1, 10)) == utc(2026, 1, 10, 1, 30)
    assert timing.after(berlin, utc(2026, 7, 10)) == utc(2026, 7, 10, 0, 30)


def test_a_time_the_clock_springs_over_fires_right_after_the_gap() -> None:
    berlin = spec(cron="30 2 * * *", timezone="Europe/Berlin")
    # 29 March 2026: 02:00 CET becomes 03:00 CEST, so 02:30 does not exist.
    fired = timing.after(berlin, utc(2026, 3, 28, 12))
    assert fired == utc(2026, 3, 29, 1)  # 03:00 CEST
    assert fired is not None
    assert fired.astimezone(BERLIN).hour == 3
    assert timing.after(berlin, fired) == utc(2026, 3, 30, 0, 30)


def test_a_time_the_clock_falls_back_over_fires_once() -> None:
    berlin = spec(cron="30 2 * * *", timezone="Europe/Berlin")
    # 25 October 2026: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice.
    first = timing.after(berlin, utc(2026, 10, 24, 12))
    assert first == utc(2026, 10, 25, 0, 30)
    assert timing.after(berlin, first) == utc(2026, 10, 26, 1, 30)


def test_an_hourly_cron_fires_every_real_hour_across_both_changes() -> None:
    hourly = spec(cron="0 * * * *", timezone="Europe/Berlin")
    for start in (utc(2026, 3, 28, 22), utc(2026, 10, 24, 22)):
        at, seen = start, []
        for _ in range(6):
            found = timing.after(hourly, at)
            assert found is not None
            seen.append(found)
            at = found
        assert [b - a for a, b in itertools.pairwise(seen)] == [timedelta(hours=1)] * 5


def test_six_fields_have_seconds_first() -> None:
    every_ten = spec(cron="*/10 * * * * *")
    assert timing.after(every_ten, utc(2026, 1, 1, 0, 0, 1)) == utc(2026, 1, 1, 0, 0, 10)
    assert timing.until(every_ten, utc(2026, 1, 1, 0, 0, 19, 5)) == utc(2026, 1, 1, 0, 0, 10)
    assert timing.until(every_ten, utc(2026, 1, 1, 0, 0, 20)) == utc(2026, 1, 1, 0, 0, 20)


@pytest.mark.parametrize("expression", ["", "* * *", "61 * * * *", "* * 32 * *", "@daily", "0 0 30 2 *"])
def test_a_cron_expression_the_calendar_cannot_read_is_refused(expression: str) -> None:
    with pytest.raises(InvalidInput, match="cron"):
        CronsimCalendar().check(expression)


# -- which firings a late scheduler makes ------------------------------------------------------


def test_on_time_and_a_little_late_fires_each_fire_time() -> None:
    plan = timing.plan(stored(utc(2026, 1, 1, 0, 1), every_s=20), utc(2026, 1, 1, 0, 1, 45), GRACE)
    assert plan.fire_at == [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 1, 20), utc(2026, 1, 1, 0, 1, 40)]
    assert plan.next_fire_at == utc(2026, 1, 1, 0, 2)


def test_not_due_yet_fires_nothing() -> None:
    plan = timing.plan(stored(utc(2026, 1, 1, 0, 1)), utc(2026, 1, 1, 0, 0, 59), GRACE)
    assert plan.fire_at == []
    assert plan.next_fire_at == utc(2026, 1, 1, 0, 1)


@pytest.mark.parametrize(
    ("catch_up", "fired_minutes"),
    [(CatchUp.SKIP, [10]), (CatchUp.LATEST, [10]), (CatchUp.ALL, [6, 7, 8, 9, 10])],
)
def test_what_was_missed_follows_catch_up(catch_up: CatchUp, fired_minutes: list[int]) -> None:
    # Due since 00:01, nothing ran until 00:10:30: 00:01 to 00:09 are missed, 00:10 is late.
    schedule = stored(utc(2026, 1, 1, 0, 1), catch_up=catch_up, catch_up_limit=5)
    plan = timing.plan(schedule, utc(2026, 1, 1, 0, 10, 30), GRACE)
    assert plan.fire_at == [utc(2026, 1, 1, 0, minute) for minute in fired_minutes]
    assert plan.next_fire_at == utc(2026, 1, 1, 0, 11)


@pytest.mark.parametrize(("catch_up", "fired"), [(CatchUp.SKIP, 0), (CatchUp.LATEST, 1), (CatchUp.ALL, 1)])
def test_a_daily_firing_missed_by_hours(catch_up: CatchUp, fired: int) -> None:
    schedule = stored(utc(2026, 1, 1, 3), cron="0 3 * * *", every_s=None, catch_up=catch_up)
    plan = timing.plan(schedule, utc(2026, 1, 1, 9), GRACE)
    assert plan.fire_at == [utc(2026, 1, 1, 3)] * fired
    assert plan.next_fire_at == utc(2026, 1, 2, 3)


def test_all_catches_up_at_most_its_limit_however_long_it_was_down() -> None:
    schedule = stored(utc(2025, 1, 1), every_s=1, catch_up=CatchUp.ALL, catch_up_limit=3)
    plan = timing.plan(schedule, utc(2026, 1, 1, 0, 0, 0, 500), GRACE)
    assert plan.fire_at == [utc(2025, 12, 31, 23, 59, 58), utc(2025, 12, 31, 23, 59, 59), utc(2026, 1, 1)]


# -- the scheduler -----------------------------------------------------------------------------


def parts(
    core: Core, *, declared: list[ScheduleSpec] | None = None, types: list[str] | None = None
) -> tuple[ScheduleAdmin, Scheduler]:
    store = MemorySchedules(core.db)
    admin = ScheduleAdmin(store=store, switches=store, timing=timing, tasks=core.service, clock=core.clock)
    scheduler = Scheduler(
        firings=store,
        admin=admin,
        timing=timing,
        tasks=core.service,
        transitions=core.transitions,
        clock=core.clock,
        declared=declared or [],
        types=types,
        telemetry=core.telemetry,
    )
    return admin, scheduler


def scheduled_inputs(core: Core) -> list[Any]:
    return [task.input for task in core.db.tasks.values()]


async def test_each_fire_time_makes_one_task_that_is_woken_and_cached() -> None:
    clock = ManualClock(utc(2026, 1, 1, 0, 0, 0, 500))
    core = build_core(clock=clock)
    admin, scheduler = parts(core)
    made = await admin.create("tick", "reverse", "abc", owner="alice", every_s=10, priority=7)
    assert made.next_fire_at == utc(2026, 1, 1, 0, 0, 10)
    assert await scheduler.fire_due() == 0
    clock.advance(10)
    assert await scheduler.fire_due() == 1
    assert await scheduler.fire_due() == 0  # fired: nothing more until the next fire time
    (task,) = core.db.tasks.values()
    assert (task.type, task.input, task.owner, task.priority) == ("reverse", "abc", "alice", 7)
    assert core.queue.depth == 1
    assert task.id in core.cache.entries
    now = await admin.get("tick", "alice")
    assert (now.last_fire_at, now.next_fire_at) == (utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 20))


async def test_two_schedulers_on_one_database_make_one_task_per_fire_time() -> None:
    clock = ManualClock(utc(2026, 1, 1))
    core = build_core(clock=clock)
    admin, first = parts(core)
    _, second = parts(core)
    await admin.create("tick", "reverse", "abc", owner=None, every_s=1)
    for _ in range(20):
        clock.advance(0.5)
        await asyncio.gather(first.fire_due(), second.fire_due())
    assert len(core.db.tasks) == 10
    assert sorted(core.db.schedule_firings) == [("tick", utc(2026, 1, 1, 0, 0, s)) for s in range(1, 11)]


async def test_a_paused_schedule_fires_nothing_and_resumes_without_catching_up() -> None:
    clock = ManualClock(utc(2026, 1, 1))
    core = build_core(clock=clock)
    admin, scheduler = parts(core)
    await admin.create("tick", "reverse", "abc", owner="alice", every_s=60, catch_up=CatchUp.ALL)
    assert (await admin.pause("tick", "alice")).paused
    clock.advance(600)
    assert await scheduler.fire_due() == 0
    resumed = await admin.resume("tick", "alice")
    assert resumed.next_fire_at == utc(2026, 1, 1, 0, 11)
    clock.advance(60)
    assert await scheduler.fire_due() == 1


async def a_system_tick(clock: ManualClock) -> tuple[Core, ScheduleAdmin]:
    """A core whose "tick" schedule (of "reverse", every minute) is due in a minute."""
    core = build_core(clock=clock)
    admin, _ = parts(core)
    await admin.create("tick", "reverse", "abc", owner=None, every_s=60)
    return core, admin


async def test_a_worker_without_the_handler_leaves_the_schedule_to_those_with_it() -> None:
    clock = ManualClock(utc(2026, 1, 1))
    core, admin = await a_system_tick(clock)
    # A worker whose code has no such handler (an older release, another app).
    registry = HandlerRegistry()

    @registry.handler
    async def other_work(_: str) -> None: ...

    other = build_core(clock=clock, db=core.db, registry=registry)
    _, scheduler = parts(other, types=registry.names())
    clock.advance(60)
    assert await scheduler.fire_due() == 0
    assert (await admin.get("tick", None)).next_fire_at == utc(2026, 1, 1, 0, 1)  # still due
    assert await scheduler._sleep_s() == MAX_SLEEP_S  # and not polled for
    _, knows = parts(core, types=core.registry.names())
    assert await knows.fire_due() == 1


async def test_a_task_that_cannot_be_made_is_an_error_on_the_schedule() -> None:
    clock = ManualClock(utc(2026, 1, 1))
    core, admin = await a_system_tick(clock)
    # A worker whose handler of the type takes another input now.
    registry = HandlerRegistry()

    @registry.handler
    async def reverse(number: int) -> int:
        return -number

    _, scheduler = parts(build_core(clock=clock, db=core.db, registry=registry))
    clock.advance(60)
    assert await scheduler.fire_due() == 0
    after = await admin.get("tick", None)
    assert after.error is not None
    assert "invalid input" in after.error
    assert after.next_fire_at == utc(2026, 1, 1, 0, 2)


async def test_the_codes_schedules_are_declared_at_start_and_retired_when_gone() -> None:
    clock = ManualClock(utc(2026, 1, 1))
    core = build_core(clock=clock)
    nightly = spec(name="nightly", cron="0 3 * * *", timezone="Europe/Berlin")
    admin, scheduler = parts(core, declared=[nightly, spec(name="often", every_s=5)])
    await scheduler.declare()  # what run does first
    declared = {s.name: s for s in await admin.schedules("bob")}
    assert set(declared) == {"nightly", "often"}
    assert declared["nightly"].system
    assert declared["nightly"].owner is None
    assert declared["nightly"].next_fire_at == utc(2026, 1, 1, 2)
    # A later release drops "often".
    await admin.declare([nightly])
    often = await admin.get("often", None)
    assert often.retired_at == clock.now()
    clock.advance(10)
    _, later_scheduler = parts(core)
    assert await later_scheduler.fire_due() == 0
    with pytest.raises(Exception, match="declared in code"):
        await admin.remove("nightly", None)
    await admin.remove("often", None)


@pytest.mark.looptime
async def test_the_scheduler_sleeps_until_the_next_fire_time() -> None:
    """On fake loop time: every second for 30 s is 30 tasks, and the scheduler
    looks about once per fire time (no busy polling)."""
    clock = LoopClock(utc(2026, 1, 1))
    core = build_core(clock=clock, registry=reverse_registry())
    admin, scheduler = parts(core)
    store = scheduler._firings
    looked = 0
    due = store.due

    async def counting(now: datetime, limit: int, types: Sequence[str] | None = None) -> list[Schedule]:
        nonlocal looked
        looked += 1
        return await due(now, limit, types)

    store.due = counting  # type: ignore[method-assign]
    await admin.create("tick", "reverse", "abc", owner=None, every_s=1)
    stop = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stop))
    await asyncio.sleep(30.5)
    stop.set()
    await running
    assert len(core.db.tasks) == 30
    assert looked <= 70


# -- the registry ------------------------------------------------------------------------------


def test_periodic_declares_a_schedule_of_its_handler() -> None:
    registry = HandlerRegistry()

    @registry.periodic("*/5 * * * *", timezone="Europe/Berlin", input={"days": 1}, catch_up="latest")
    @registry.handler(queue="reports")
    async def report(options: dict[str, int]) -> None: ...

    @registry.periodic(every=timedelta(seconds=30), name="heartbeat")
    async def beat(_: None) -> None: ...

    assert "beat" in registry
    assert "report" in registry
    by_name = {s.name: s for s in registry.schedules()}
    assert by_name["report"].cron == "*/5 * * * *"
    assert by_name["report"].catch_up is CatchUp.LATEST
    assert by_name["report"].input == {"days": 1}
    assert by_name["report"].system
    assert (by_name["heartbeat"].type, by_name["heartbeat"].every_s) == ("beat", 30)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("* * * * *",), {"every": 5}, "either cron or every_s"),
        ((), {}, "either cron or every_s"),
        ((), {"every": timedelta(seconds=1.5)}, "whole seconds"),
        ((), {"every": 0}, "every_s"),
        (("* * * * *",), {"timezone": "Mars/Olympus"}, "time zone"),
        (("* * * * *",), {"catch_up": "sometimes"}, "catch_up"),
        (("* * * * *",), {"input": 5}, "invalid input"),
        (("* * * * *",), {"queue": "nowhere"}, "unknown queue"),
        (("* * * * *",), {"name": "bad name"}, "name"),
    ],
)
def test_periodic_refuses_what_cannot_fire(args: tuple[Any, ...], kwargs: dict[str, Any], match: str) -> None:
    registry = HandlerRegistry()
    with pytest.raises(HandlerRegistrationError, match=match):

        @registry.periodic(*args, **kwargs)
        async def job(_: str | None) -> None: ...


def test_two_schedules_of_one_name_are_refused() -> None:
    registry = HandlerRegistry()

    @registry.handler
    async def job(_: None) -> None: ...

    registry.periodic(every=60)(job)
    with pytest.raises(HandlerRegistrationError, match="already declared"):
        registry.periodic(every=30)(job)
    registry.periodic(every=30, name="job-fast")(job)
    assert [s.name for s in registry.schedules()] == ["job", "job-fast"]
