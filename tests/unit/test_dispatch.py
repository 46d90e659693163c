"""The dispatcher's confirmations: written in batches, none left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

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

    async def mark_dispatched(self, task_ids: Sequence[int], at: datetime) -> None:
        self.writes.append(list(task_ids))
        if len(self.writes) == 1:
            self.writing.set()
            await self.go_on.wait()
        await self._tasks.mark_dispatched(task_ids, at)


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
