"""The dispatcher's confirmations: written in batches, none left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec
import pytest

from taskcore.adapters.memory import MemoryTasks
from taskcore.transitions.dispatch import Dispatcher
from tests.core import LoopClock, build_core

pytestmark = pytest.mark.looptime


class SlowLog:
    """A dispatch log whose first write waits until the test lets it finish."""

    def __init__(self, tasks: MemoryTasks) -> None:
        self._tasks = tasks
        self.writing = asyncio.Event()
        self.go_on = asyncio.Event()
        self.writes: list[list[int]] = []

    async def mark_dispatched(self, confirmed: Sequence[tuple[int, datetime]]) -> None:
        self.writes.append([task_id for task_id, _ in confirmed])
        if len(self.writes) == 1:
            self.writing.set()
            await self.go_on.wait()
        await self._tasks.mark_dispatched(confirmed)


async def test_a_confirmation_that_arrives_during_a_flush_is_written_without_another_publish() -> None:
    """Found by the lost wake-up test: the API, which has no sweeper, kept such
    a confirmation buffered until its next publish, and the worker's sweeper
    published those tasks a second time."""
    core = build_core(clock=LoopClock())
    log = SlowLog(core.tasks)
    dispatcher = Dispatcher(log=log, queue=core.queue, clock=core.clock, flush_delay_s=0.05)
    one = await core.service.submit("reverse", "one")
    two = await core.service.submit("reverse", "two")
    assert await dispatcher.dispatch(one)
    await log.writing.wait()  # the first flush is writing, and waits
    assert await dispatcher.dispatch(two)  # confirmed meanwhile
    log.go_on.set()
    await asyncio.sleep(1)  # loop time: twenty flush delays, and no publish comes
    assert log.writes == [[one.id], [two.id]]
    assert {one.id, two.id} <= core.db.dispatched_at.keys()


# -- wake-ups that meet share a message -----------------------------------------------------


async def test_wake_ups_that_meet_share_one_message_per_queue_and_priority() -> None:
    core = build_core(clock=LoopClock())
    tasks = [await core.service.submit("reverse", str(n), priority=n % 2) for n in range(6)]
    core.queue.purge()
    dispatcher = Dispatcher(log=core.tasks, queue=core.queue, clock=core.clock, batch=64)
    published = core.queue.published
    assert await asyncio.gather(*(dispatcher.dispatch(task) for task in tasks)) == [True] * 6
    # Dispatched together: one message per priority.
    assert core.queue.published - published == 2
    async with core.queue.consume(prefetch=3) as consumer:
        bodies = []
        for _ in range(6):
            delivery = await consumer.next()
            bodies.append(delivery.body)
            await delivery.ack()
    assert sorted(int(body) for body in bodies) == [task.id for task in tasks]
    await dispatcher.aclose()
    assert {task.id for task in tasks} <= core.db.dispatched_at.keys()


async def test_a_message_wakes_at_most_batch_tasks() -> None:
    core = build_core(clock=LoopClock())
    tasks = [await core.service.submit("reverse", str(n)) for n in range(10)]
    core.queue.purge()
    dispatcher = Dispatcher(log=core.tasks, queue=core.queue, clock=core.clock, batch=4)
    published = core.queue.published
    await asyncio.gather(*(dispatcher.dispatch(task) for task in tasks))
    assert core.queue.published - published == 3  # 4, 4 and 2
    assert core.queue.wake_ups == 10


async def test_delayed_and_suspect_wake_ups_go_alone() -> None:
    core = build_core(clock=LoopClock())
    later = await core.service.submit("reverse", "later", delay=timedelta(seconds=30))
    now = [await core.service.submit("reverse", str(n)) for n in range(3)]
    suspect = msgspec.structs.replace(now[0], suspect=True)
    core.queue.purge()
    dispatcher = Dispatcher(log=core.tasks, queue=core.queue, clock=core.clock, batch=64)
    published = core.queue.published
    await asyncio.gather(*(dispatcher.dispatch(task) for task in [later, suspect, *now[1:]]))
    assert core.queue.published - published == 3  # the delayed one, the suspect, the two due now together
    assert core.queue.delayed == 2  # the submit's own and this one


async def test_batch_one_publishes_one_message_per_task() -> None:
    core = build_core(clock=LoopClock())
    tasks = [await core.service.submit("reverse", str(n)) for n in range(5)]
    core.queue.purge()
    dispatcher = Dispatcher(log=core.tasks, queue=core.queue, clock=core.clock, batch=1)
    published = core.queue.published
    await asyncio.gather(*(dispatcher.dispatch(task) for task in tasks))
    assert core.queue.published - published == 5


async def test_wake_ups_the_broker_refused_are_left_for_the_sweeper() -> None:
    core = build_core(clock=LoopClock())
    tasks = [await core.service.submit("reverse", str(n)) for n in range(3)]
    dispatcher = Dispatcher(log=core.tasks, queue=core.queue, clock=core.clock, batch=64)
    core.queue.available = False
    assert await asyncio.gather(*(dispatcher.dispatch(task) for task in tasks)) == [False] * 3
    await dispatcher.aclose()


async def test_a_task_confirmed_twice_in_one_window_keeps_its_latest_message() -> None:
    """A fast retry: its first wake-up shared a message, its second went alone,
    both confirmed before one flush. PostgreSQL's UPDATE ... FROM would keep
    either; the dispatcher sends the latest only."""
    core = build_core(clock=LoopClock())
    log = SlowLog(core.tasks)
    log.go_on.set()
    task = await core.service.submit("reverse", "x")
    dispatcher = Dispatcher(log=log, queue=core.queue, clock=core.clock, flush_delay_s=0.05)
    assert await dispatcher.dispatch(task)
    await asyncio.sleep(0.001)
    assert await dispatcher.dispatch(task)
    await dispatcher.aclose()
    assert log.writes == [[task.id]]
