"""The behaviour every ``WakeUpCensus`` must have.

Subclass ``WakeUpCensusContract`` next to three fixtures over one opened,
empty database: ``census`` (the adapter under test: ``MemoryCensus``,
``PostgresCensus``), ``tasks`` (the task table's adapter, see
``tests/contracts/tasks.py``), through which the tests add the tasks and
confirm their messages (``DispatchLog.mark_dispatched``), and ``roster`` (a
``WorkerRoster``), through which workers report the messages they hold.

Every census here is taken with the sweeper's windows: confirmed over
``GRACE`` ago (``settled_before = now - GRACE``), a deficit that must last
``PERSISTING``, and the workers' reports of the last ``HELD_REPORTS``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.model.workers import WorkerReport
from taskcore.ports import WakeUpCensus, WorkerRoster
from tests.contracts.tasks import LEASE, Tasks, later, new_task

GRACE = timedelta(seconds=10)  # redispatch_grace_s
PERSISTING = timedelta(seconds=15)  # lost_wake_up_grace_s
HELD_REPORTS = timedelta(seconds=15)  # the sweeper's HELD_REPORTS_S


async def confirmed(tasks: Tasks, *, at: float = 1, priority: int = 0, run_at: float = 0) -> Task:
    """A PENDING task due at ``later(run_at)`` whose message, its own, was
    confirmed at ``later(at)``: the first such message at that very time, the
    next ones a microsecond apart, as a dispatcher times its messages."""
    task = await tasks.add(msgspec.structs.replace(new_task(run_at=later(run_at)), priority=priority))
    time = later(at)
    while time in _message_times:
        time += timedelta(microseconds=1)
    _message_times.add(time)
    await tasks.mark_dispatched([(task.id, time)])
    return task


_message_times: set[datetime] = set()  # of the messages ``confirmed`` made (tasks are new each test)


async def sharing_a_message(tasks: Tasks, count: int, *, at: float = 1) -> list[Task]:
    """``count`` PENDING tasks woken by one message confirmed at ``later(at)``."""
    added = [await tasks.add(new_task()) for _ in range(count)]
    await tasks.mark_dispatched([(task.id, later(at)) for task in added])
    return added


async def take(
    census: WakeUpCensus,
    at: float,
    *,
    ready: int = 0,
    limit: int = 100,
    held_since: datetime | None = None,
    queues: tuple[str, ...] = ("default",),
) -> list[Task]:
    """The census a sweeper takes at ``later(at)``, with ``ready`` messages on the work queues."""
    now = later(at)
    return await census.take_missing(
        ready=ready,
        now=now,
        settled_before=now - GRACE,
        held_since=held_since if held_since is not None else now - HELD_REPORTS,
        persisting=PERSISTING,
        limit=limit,
        queues=queues,
    )


def ids(found: list[Task]) -> set[int]:
    return {task.id for task in found}


def report(worker: str, *, seen_at: float, held: int) -> WorkerReport:
    return WorkerReport(
        id=worker, started_at=later(0), seen_at=later(seen_at), in_flight=0, processed=0, held=held
    )


class WakeUpCensusContract:
    """Tasks whose messages the broker no longer holds, found by counting both sides."""

    async def test_without_a_deficit_nothing_is_taken(self, census: WakeUpCensus, tasks: Tasks) -> None:
        assert await take(census, 100) == []  # no tasks at all
        for _ in range(3):
            await confirmed(tasks)
        assert await take(census, 100, ready=3) == []
        assert await take(census, 200, ready=3) == []  # long after: still nothing missing
        assert await take(census, 300, ready=5) == []  # more messages than tasks: duplicates, harmless

    async def test_only_the_named_queues_count(self, census: WakeUpCensus, tasks: Tasks) -> None:
        """Tasks of a queue the sweeper does not know (no handler uses it any
        more) have no ready count to match: they are not woken again and again."""
        orphan = await tasks.add(msgspec.structs.replace(new_task(), queue="gone"))
        await tasks.mark_dispatched([(orphan.id, later(1))])
        mail = await tasks.add(msgspec.structs.replace(new_task(), queue="emails"))
        await tasks.mark_dispatched([(mail.id, later(1))])
        assert await take(census, 100, queues=("default", "emails")) == []
        assert ids(await take(census, 200, queues=("default", "emails"))) == {mail.id}

    async def test_a_deficit_is_taken_once_it_lasted(self, census: WakeUpCensus, tasks: Tasks) -> None:
        added = [await confirmed(tasks) for _ in range(3)]
        assert await take(census, 100, ready=1) == []  # two missing: remembered since later(100)
        assert await take(census, 110, ready=1) == []
        assert await take(census, 114.9, ready=1) == []
        woken = await take(census, 115, ready=1)  # lasted PERSISTING
        assert len(woken) == 2
        assert ids(woken) <= ids(added)
        assert all(task.status is TaskStatus.PENDING for task in woken)
        stored = {task.id: await tasks.get(task.id, fresh=True) for task in woken}
        assert {task.id: task for task in woken} == stored  # the rows as stored, nothing else changed
        # Stamped as dispatched now: with their messages published again,
        # nothing is missing, and they are not taken again.
        assert await take(census, 115, ready=1 + len(woken)) == []
        assert await take(census, 200, ready=1 + len(woken)) == []

    async def test_what_one_census_took_the_next_does_not_take_again(
        self, census: WakeUpCensus, tasks: Tasks
    ) -> None:
        added = [await confirmed(tasks) for _ in range(4)]
        assert await take(census, 100) == []  # four missing
        first = await take(census, 115, limit=2)
        assert len(first) == 2
        second = await take(census, 115, ready=2, limit=2)  # the first two's messages are ready now
        assert not ids(first) & ids(second)
        assert ids(first) | ids(second) <= ids(added)

    async def test_highest_priority_first_then_the_oldest_confirmation(
        self, census: WakeUpCensus, tasks: Tasks
    ) -> None:
        await confirmed(tasks, at=1, priority=0)
        await confirmed(tasks, at=3, priority=5)
        c = await confirmed(tasks, at=2, priority=5)  # added after the one before, confirmed before it
        d = await confirmed(tasks, at=4, priority=9)
        await confirmed(tasks, at=5, priority=1)
        assert await take(census, 100, ready=1, limit=2) == []  # four missing
        woken = await take(census, 115, ready=1, limit=2)  # the limit, not the deficit
        assert ids(woken) == {d.id, c.id}
        assert [task.priority for task in woken] == [9, 5]

    async def test_at_most_the_deficit_oldest_confirmation_first_within_a_priority(
        self, census: WakeUpCensus, tasks: Tasks
    ) -> None:
        newer = await confirmed(tasks, at=2)
        older = [await confirmed(tasks, at=1.5 - n / 10) for n in range(3)]  # added later, confirmed earlier
        assert await take(census, 100, ready=1) == []  # three missing
        woken = await take(census, 115, ready=1, limit=10)  # the deficit, not the limit
        assert ids(woken) == ids(older)
        assert newer.id not in ids(woken)

    async def test_ready_messages_and_those_the_workers_hold_cover_tasks(
        self, census: WakeUpCensus, tasks: Tasks, roster: WorkerRoster
    ) -> None:
        added = [await confirmed(tasks) for _ in range(6)]
        await roster.report_worker(report("w1", seen_at=95, held=2))
        await roster.report_worker(report("w2", seen_at=99, held=1))
        await roster.report_worker(report("gone", seen_at=80, held=4))  # before held_since: not counted
        since = later(90)
        assert await take(census, 100, ready=3, held_since=since) == []  # 3 ready + 3 held
        assert await take(census, 200, ready=3, held_since=since) == []
        assert await take(census, 300, ready=2, held_since=since) == []  # one missing: remembered
        woken = await take(census, 315, ready=2, held_since=since)
        assert len(woken) == 1
        assert ids(woken) <= ids(added)

    async def test_a_report_seen_at_held_since_counts(
        self, census: WakeUpCensus, tasks: Tasks, roster: WorkerRoster
    ) -> None:
        for _ in range(4):
            await confirmed(tasks)
        await roster.report_worker(report("w1", seen_at=80, held=4))
        assert await take(census, 100, held_since=later(80)) == []
        assert await take(census, 200, held_since=later(80)) == []
        assert await take(census, 300, held_since=later(80.001)) == []  # now missing: remembered
        assert len(await take(census, 315, held_since=later(80.001))) == 4

    async def test_a_deficit_that_goes_away_starts_the_clock_again(
        self, census: WakeUpCensus, tasks: Tasks
    ) -> None:
        for _ in range(3):
            await confirmed(tasks)
        assert await take(census, 100, ready=1) == []  # remembered since later(100)
        assert await take(census, 110, ready=3) == []  # the messages are back: forgotten
        assert await take(census, 115, ready=1) == []  # missing again since later(115)
        assert await take(census, 129, ready=1) == []
        assert len(await take(census, 130, ready=1)) == 2

    async def test_a_delayed_task_counts_once_late_by_a_tenth_of_its_delay(
        self, census: WakeUpCensus, tasks: Tasks
    ) -> None:
        """Confirmed at later(0) with a delay of 1000 s: due at later(1000), and
        its message may come up to 100 s late from the delay buckets."""
        delayed = await confirmed(tasks, at=0, run_at=1000)
        assert await take(census, 500) == []  # not due
        assert await take(census, 1005) == []  # due, but within its lateness
        assert await take(census, 1100) == []  # late by exactly its lateness: not yet past it
        assert await take(census, 1101) == []  # counted from now on: remembered since later(1101)
        # Had any census before counted it, it would be taken by now.
        assert await take(census, 1115) == []
        assert ids(await take(census, 1116)) == {delayed.id}

    async def test_a_task_due_at_its_confirmation_has_no_lateness(
        self, census: WakeUpCensus, tasks: Tasks
    ) -> None:
        """A delay that was over when the message was confirmed (a retry
        published late, a task due in the past) leaves nothing to wait for."""
        task = await confirmed(tasks, at=50, run_at=20)
        assert await take(census, 60) == []  # confirmed within the grace
        assert await take(census, 60.001) == []  # missing: remembered
        assert ids(await take(census, 75.001)) == {task.id}

    async def test_only_confirmed_pending_tasks_count(self, census: WakeUpCensus, tasks: Tasks) -> None:
        async def claimed(max_attempts: int = 3) -> Task:
            """Confirmed at later(1), then claimed at later(2)."""
            task = await tasks.add(new_task(max_attempts=max_attempts))
            await tasks.mark_dispatched([(task.id, later(1))])
            claimed = await tasks.claim(task.id, later(2), LEASE)
            assert claimed is not None
            return claimed

        await tasks.add(new_task())  # never confirmed: the outbox's to publish, not the census's
        await claimed()  # PROCESSING: its message is with a worker
        assert await tasks.save((await claimed()).complete("ok", later(3)))
        assert await tasks.save((await claimed(max_attempts=1)).fail("boom", later(3), None))
        retrying = (await claimed()).fail("boom", later(3), timedelta(seconds=1))
        assert await tasks.save(retrying)  # PENDING again, its new message not confirmed
        cancelled = await confirmed(tasks)
        assert await tasks.save(cancelled.cancel(later(3)))
        assert await take(census, 100) == []
        assert await take(census, 200) == []  # never a deficit
        pending = await confirmed(tasks, at=210)
        assert await take(census, 300) == []  # the one confirmed PENDING task: remembered
        assert ids(await take(census, 315)) == {pending.id}

    async def test_tasks_woken_in_a_deficit_are_not_picked_again_before_those_still_missing(
        self, census: WakeUpCensus, tasks: Tasks
    ) -> None:
        high = [await confirmed(tasks, priority=9) for _ in range(2)]
        low = [await confirmed(tasks, priority=0) for _ in range(2)]
        assert await take(census, 100) == []  # four missing
        assert ids(await take(census, 115, limit=2)) == ids(high)
        # The high ones' messages are ready again; the low ones are still missing.
        assert ids(await take(census, 126, ready=2, limit=2)) == ids(low)

    async def test_the_next_census_within_the_grace_sees_what_is_still_missing(
        self, census: WakeUpCensus, tasks: Tasks
    ) -> None:
        added = [await confirmed(tasks) for _ in range(4)]
        assert await take(census, 100) == []  # four missing
        first = await take(census, 115, limit=2)
        second = await take(census, 116, ready=2, limit=2)  # the first two's messages are ready now
        assert ids(first) | ids(second) == ids(added)

    async def test_tasks_confirmed_after_the_deficit_began_are_picked_once_it_begins_again(
        self, census: WakeUpCensus, tasks: Tasks
    ) -> None:
        """Tasks lost after the deficit began are not among its picks; once the
        picks run out while the deficit lasts, it begins again and they are."""
        first = [await confirmed(tasks, at=1) for _ in range(2)]
        assert await take(census, 100) == []  # two missing: remembered since later(100)
        late = [await confirmed(tasks, at=105) for _ in range(2)]  # confirmed after that, lost too
        assert ids(await take(census, 115)) == ids(first)
        # The woken two are back on the queue; the late two are still missing.
        assert await take(census, 116, ready=2) == []  # nothing left to pick: it begins again
        assert await take(census, 130, ready=2) == []
        assert ids(await take(census, 131, ready=2)) == ids(late)

    async def test_the_tasks_of_one_message_count_as_one_message(
        self, census: WakeUpCensus, tasks: Tasks
    ) -> None:
        await sharing_a_message(tasks, 5, at=1)
        await sharing_a_message(tasks, 3, at=2)
        assert await take(census, 100, ready=2) == []  # two messages, both on the broker
        assert await take(census, 200, ready=2) == []

    async def test_a_lost_message_wakes_every_task_it_woke(self, census: WakeUpCensus, tasks: Tasks) -> None:
        lost = await sharing_a_message(tasks, 5, at=1)
        await sharing_a_message(tasks, 3, at=2)  # still on the broker
        assert await take(census, 100, ready=1) == []  # one message missing: remembered
        woken = await take(census, 115, ready=1)
        assert ids(woken) == ids(lost)  # the older message's five, not the other's three
        assert await take(census, 115, ready=1 + 1) == []  # stamped now: one message again

    async def test_the_limit_bounds_the_tasks_of_the_messages_taken(
        self, census: WakeUpCensus, tasks: Tasks
    ) -> None:
        lost = await sharing_a_message(tasks, 5, at=1)
        assert await take(census, 100) == []
        first = await take(census, 115, limit=3)
        assert len(first) == 3
        assert ids(first) <= ids(lost)
