"""The behaviour every schedules adapter must have (``ScheduleStore`` and ``ScheduleFirings``).

Subclass ``SchedulesContract`` next to a ``schedules`` fixture
(``MemorySchedules``, ``PostgresSchedules``) and a ``tasks`` fixture (the task
table's adapter) over one empty database.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Protocol

import msgspec

from taskcore.model.schedules import CatchUp, Schedule, ScheduleConflict
from taskcore.model.task import NewTask
from taskcore.ports.schedules import ScheduleFirings, ScheduleStore, ScheduleSwitches
from tests.contracts.tasks import T0, Tasks, later


class Schedules(ScheduleStore, ScheduleSwitches, ScheduleFirings, Protocol):
    """The three ports, as one adapter implements them."""


def schedule(name: str = "tick", *, owner: str | None = "alice", **fields: Any) -> Schedule:
    values: dict[str, Any] = {
        "name": name,
        "type": "echo",
        "input": {"n": 1},
        "every_s": 60,
        "owner": owner,
        "next_fire_at": later(60),
        "created_at": T0,
        "updated_at": T0,
        **fields,
    }
    return Schedule(**values)


def system(name: str, **fields: Any) -> Schedule:
    return schedule(name, owner=None, system=True, **fields)


def task_of(at: datetime, *, unique_key: str | None = None) -> NewTask:
    return NewTask(
        type="echo",
        input={"fired": at.isoformat()},
        max_attempts=3,
        run_at=at,
        created_at=at,
        owner="alice",
        unique_key=unique_key,
    )


class SchedulesContract:
    async def test_a_schedule_is_stored_and_read_back(self, schedules: Schedules) -> None:
        made = schedule(cron="*/5 * * * *", every_s=None, timezone="Europe/Berlin", catch_up=CatchUp.ALL)
        assert await schedules.add_schedule(made) == made
        assert await schedules.schedule("tick") == made
        assert await schedules.schedule("nope") is None

    async def test_a_name_is_taken_once(self, schedules: Schedules) -> None:
        await schedules.add_schedule(schedule())
        try:
            await schedules.add_schedule(schedule(owner="bob"))
        except ScheduleConflict:
            pass
        else:
            raise AssertionError("a second schedule of one name was stored")
        assert (await schedules.schedule("tick")) == schedule()

    async def test_an_owner_lists_its_own_and_the_system_ones(self, schedules: Schedules) -> None:
        for made in (schedule("b"), schedule("a", owner="bob"), system("c")):
            await schedules.add_schedule(made)
        assert [s.name for s in await schedules.schedules("alice")] == ["b", "c"]
        assert [s.name for s in await schedules.schedules(None)] == ["a", "b", "c"]

    async def test_removing_forgets_it_and_its_firings(self, schedules: Schedules, tasks: Tasks) -> None:
        made = await schedules.add_schedule(schedule())
        await schedules.fire(made, [(later(60), task_of(later(60)))], next_fire_at=later(120), now=later(60))
        assert await schedules.remove_schedule("tick")
        assert not await schedules.remove_schedule("tick")
        again = await schedules.add_schedule(schedule())
        fired = await schedules.fire(
            again, [(later(60), task_of(later(60)))], next_fire_at=later(120), now=later(61)
        )
        assert [one.created for one in fired] == [True]

    async def test_pause_and_resume(self, schedules: Schedules) -> None:
        await schedules.add_schedule(schedule())
        paused = await schedules.pause_schedule("tick", later(1))
        assert paused is not None
        assert paused.paused
        assert paused.updated_at == later(1)
        assert await schedules.due(later(1000), 10) == []
        assert await schedules.next_due() is None
        resumed = await schedules.resume_schedule("tick", later(1020), later(1000))
        assert resumed is not None
        assert not resumed.paused
        assert resumed.next_fire_at == later(1020)
        # Resuming one that runs changes nothing.
        assert await schedules.resume_schedule("tick", later(5000), later(5000)) == resumed
        assert await schedules.pause_schedule("nope", later(1)) is None
        assert await schedules.resume_schedule("nope", None, later(1)) is None

    async def test_due_lists_active_ones_soonest_first(self, schedules: Schedules) -> None:
        await schedules.add_schedule(schedule("late", next_fire_at=later(30)))
        await schedules.add_schedule(schedule("soon", next_fire_at=later(10)))
        await schedules.add_schedule(schedule("future", next_fire_at=later(100)))
        await schedules.add_schedule(schedule("paused", next_fire_at=later(1), paused=True))
        await schedules.add_schedule(schedule("retired", next_fire_at=later(1), retired_at=T0))
        await schedules.add_schedule(schedule("done", next_fire_at=None))
        assert [s.name for s in await schedules.due(later(50), 10)] == ["soon", "late"]
        assert [s.name for s in await schedules.due(later(50), 1)] == ["soon"]
        assert await schedules.next_due() == later(10)

    async def test_due_can_be_kept_to_some_task_types(self, schedules: Schedules) -> None:
        await schedules.add_schedule(schedule("echoes", next_fire_at=later(10)))
        await schedules.add_schedule(schedule("reports", type="report", next_fire_at=later(20)))
        assert [s.name for s in await schedules.due(later(50), 10, ["report", "other"])] == ["reports"]
        assert await schedules.due(later(50), 10, []) == []
        assert await schedules.next_due(["report"]) == later(20)
        assert await schedules.next_due(["other"]) is None

    async def test_declare_stores_keeps_and_retires(self, schedules: Schedules) -> None:
        await schedules.declare([system("kept"), system("changed"), system("gone")], T0)
        kept = await schedules.schedule("kept")
        assert kept is not None
        assert kept.system
        assert kept.owner is None
        assert kept.retired_at is None
        # A scheduler moved them on, and someone paused one.
        for name in ("kept", "changed"):
            stored = await schedules.schedule(name)
            assert stored is not None
            await schedules.fire(stored, [], next_fire_at=later(600), now=later(60))
        assert await schedules.pause_schedule("kept", later(61)) is not None
        await schedules.add_schedule(schedule("mine", next_fire_at=later(5)))
        later_code = [
            system("kept", input={"n": 2}, next_fire_at=later(700)),
            system("changed", every_s=30, next_fire_at=later(690)),
            system("mine", next_fire_at=later(700)),
        ]
        await schedules.declare(later_code, later(650))
        kept = await schedules.schedule("kept")
        assert kept is not None
        assert (kept.input, kept.next_fire_at, kept.paused) == ({"n": 2}, later(600), True)
        changed = await schedules.schedule("changed")
        assert changed is not None
        assert (changed.every_s, changed.next_fire_at) == (30, later(690))
        gone = await schedules.schedule("gone")
        assert gone is not None
        assert gone.retired_at == later(650)
        mine = await schedules.schedule("mine")
        assert mine is not None
        assert not mine.system
        assert mine.next_fire_at == later(5)
        # Declared again: no longer retired, its next fire time from now.
        await schedules.declare([*later_code, system("gone", next_fire_at=later(900))], later(800))
        gone = await schedules.schedule("gone")
        assert gone is not None
        assert gone.retired_at is None
        assert gone.next_fire_at == later(900)

    async def test_a_firing_stores_its_tasks_and_moves_on(self, schedules: Schedules, tasks: Tasks) -> None:
        made = await schedules.add_schedule(schedule())
        times = [later(60), later(120)]
        fired = await schedules.fire(
            made, [(at, task_of(at)) for at in times], next_fire_at=later(180), now=later(125)
        )
        assert [one.created for one in fired] == [True, True]
        stored = [await tasks.get(one.task.id) for one in fired]
        assert [task.input if task else None for task in stored] == [
            {"fired": at.isoformat()} for at in times
        ]
        after = await schedules.schedule("tick")
        assert after is not None
        assert (after.next_fire_at, after.last_fire_at, after.error) == (later(180), later(120), None)
        assert after.updated_at == later(125)

    async def test_a_stale_read_fires_nothing(self, schedules: Schedules, tasks: Tasks) -> None:
        made = await schedules.add_schedule(schedule())
        firing = [(later(60), task_of(later(60)))]
        assert len(await schedules.fire(made, firing, next_fire_at=later(120), now=later(60))) == 1
        assert await schedules.fire(made, firing, next_fire_at=later(120), now=later(61)) == []
        paused = await schedules.pause_schedule("tick", later(62))
        assert paused is not None
        assert await schedules.fire(paused, [], next_fire_at=later(180), now=later(125)) == []

    async def test_a_fire_time_makes_one_task(self, schedules: Schedules, tasks: Tasks) -> None:
        made = await schedules.add_schedule(schedule())
        first = await schedules.fire(
            made, [(later(60), task_of(later(60)))], next_fire_at=later(120), now=later(60)
        )
        assert len(first) == 1
        now = await schedules.schedule("tick")
        assert now is not None
        # A fire time fired before is left out, whoever asks again.
        again = await schedules.fire(
            now,
            [(later(60), task_of(later(60))), (later(120), task_of(later(120)))],
            next_fire_at=later(180),
            now=later(120),
        )
        assert [one.task.input for one in again] == [{"fired": later(120).isoformat()}]

    async def test_concurrent_schedulers_make_one_task(self, schedules: Schedules, tasks: Tasks) -> None:
        made = await schedules.add_schedule(schedule())
        firing = [(later(60), task_of(later(60)))]
        outcomes = await asyncio.gather(
            *(schedules.fire(made, firing, next_fire_at=later(120), now=later(60)) for _ in range(5))
        )
        assert sorted(len(one) for one in outcomes) == [0, 0, 0, 0, 1]

    async def test_an_error_is_recorded_and_the_schedule_moves_on(self, schedules: Schedules) -> None:
        made = await schedules.add_schedule(schedule())
        assert (
            await schedules.fire(made, [], next_fire_at=later(120), now=later(60), error="no handler") == []
        )
        after = await schedules.schedule("tick")
        assert after is not None
        assert (after.next_fire_at, after.last_fire_at, after.error) == (later(120), None, "no handler")

    async def test_a_held_unique_key_gives_its_holder(self, schedules: Schedules, tasks: Tasks) -> None:
        holder = await tasks.add(msgspec.structs.replace(task_of(T0), unique_key="one-at-a-time"))
        made = await schedules.add_schedule(schedule())
        fired = await schedules.fire(
            made,
            [(later(60), task_of(later(60), unique_key="one-at-a-time"))],
            next_fire_at=later(120),
            now=later(60),
        )
        assert [(one.task.id, one.created) for one in fired] == [(holder.id, False)]

    async def test_next_due_skips_what_has_no_fire_time(self, schedules: Schedules) -> None:
        assert await schedules.next_due() is None
        await schedules.add_schedule(schedule(next_fire_at=None))
        assert await schedules.next_due() is None
        await schedules.add_schedule(schedule("b", next_fire_at=later(3) + timedelta(microseconds=5)))
        assert await schedules.next_due() == later(3) + timedelta(microseconds=5)
