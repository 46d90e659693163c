"""Transactional enqueue on the memory adapters: a task stored in the caller's
transaction runs once it commits and never if it rolls back; the worker's
commit listener publishes its wake-up, and the sweeper does when nobody heard.

Fake loop time (``looptime``), the core on the loop's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from taskcore import TaskStatus, Worker
from taskcore.adapters.memory import MemoryCommitNotices
from taskcore.adapters.memory.transactional import MemoryTransaction
from taskcore.errors import ConfigurationError, InvalidInput, UnknownTaskType
from taskcore.work.committed import CommitListener
from tests.core import Core, LoopClock, build_core, reverse_registry

pytestmark = pytest.mark.looptime


@pytest.fixture
def core() -> Core:
    return build_core(clock=LoopClock(), registry=reverse_registry())


def worker_of(core: Core, *, listening: bool = True) -> Worker:
    commits = CommitListener(
        notices=MemoryCommitNotices(core.db), reader=core.tasks, transitions=core.transitions, retry_s=0.1
    )
    return Worker(
        processor=core.processor,
        queue=core.queue,
        concurrency=2,
        sweeper=core.sweeper,
        backgrounds=[commits] if listening else [],
    )


async def eventually(check: Callable[[], bool], within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def status_of(core: Core, task_id: int) -> TaskStatus | None:
    task = core.db.tasks.get(task_id)
    return task.status if task else None


async def test_a_committed_task_runs_at_once_and_a_rolled_back_one_never(core: Core) -> None:
    worker = worker_of(core)
    running = asyncio.create_task(worker.run())
    await eventually(lambda: bool(core.db.commit_listeners))
    try:
        kept, dropped = MemoryTransaction(core.db), MemoryTransaction(core.db)
        committed = await core.service.submit("reverse", "kept", connection=kept)
        rolled_back = await core.service.submit("reverse", "dropped", connection=dropped)
        assert status_of(core, committed.id) is None, "nothing is visible before the commit"
        assert core.queue.published == 0, "nothing is published before the commit"

        started = asyncio.get_running_loop().time()
        dropped.rollback()
        kept.commit()
        await eventually(lambda: status_of(core, committed.id) is TaskStatus.COMPLETED)
        # Woken by the commit's notice, not by the sweeper's next round (seconds later).
        assert asyncio.get_running_loop().time() - started < 0.5
        assert core.db.tasks[committed.id].result == "tpek"

        await asyncio.sleep(core.config.sweep_interval_s * 3)
        assert status_of(core, rolled_back.id) is None, "a rolled-back task never exists"
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)


async def test_a_commit_nobody_heard_is_published_by_the_sweeper(core: Core) -> None:
    worker = worker_of(core, listening=False)
    running = asyncio.create_task(worker.run())
    try:
        transaction = MemoryTransaction(core.db)
        task = await core.service.submit("reverse", "unheard", connection=transaction)
        transaction.commit()
        await eventually(lambda: status_of(core, task.id) is TaskStatus.COMPLETED, within=120)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)


async def test_a_task_cancelled_before_the_notice_is_not_woken(core: Core) -> None:
    listener = CommitListener(
        notices=MemoryCommitNotices(core.db), reader=core.tasks, transitions=core.transitions
    )
    transaction = MemoryTransaction(core.db)
    task = await core.service.submit("reverse", "changed its mind", connection=transaction)
    transaction.commit()
    await core.service.cancel(task.id)
    assert await listener.wake([task.id]) == 0
    assert core.queue.published == 0


async def test_a_step_after_an_unfinished_task_waits_for_it(core: Core) -> None:
    """A task enqueued in a transaction may run after others: the notice
    settles it (blocked) instead of waking it."""
    parent = await core.service.submit("reverse", "first")
    transaction = MemoryTransaction(core.db)
    child = await core.service.submit("reverse", "second", after=[parent.id], connection=transaction)
    transaction.commit()
    listener = CommitListener(
        notices=MemoryCommitNotices(core.db), reader=core.tasks, transitions=core.transitions
    )
    published = core.queue.published
    assert await listener.wake([child.id]) == 0
    assert core.queue.published == published, "a blocked step is not woken"
    assert core.db.tasks[child.id].blocked


async def test_the_transaction_is_the_adapters_own(core: Core) -> None:
    with pytest.raises(ConfigurationError, match="MemoryTransaction"):
        await core.service.submit("reverse", "x", connection=object())
    other = build_core(clock=LoopClock())
    with pytest.raises(ConfigurationError):
        await core.service.submit("reverse", "x", connection=MemoryTransaction(other.db))


async def test_an_idempotency_key_is_refused_within_a_transaction(core: Core) -> None:
    with pytest.raises(InvalidInput, match="Idempotency-Key"):
        await core.service.submit_detailed(
            "reverse", "x", idempotency_key="k", connection=MemoryTransaction(core.db)
        )


async def test_input_is_checked_before_the_transaction_sees_it(core: Core) -> None:
    transaction = MemoryTransaction(core.db)
    with pytest.raises(UnknownTaskType):
        await core.service.submit("no-such-type", "x", connection=transaction)
    assert transaction.added == []


async def test_a_step_may_run_after_a_task_of_the_same_transaction(core: Core) -> None:
    transaction = MemoryTransaction(core.db)
    first = await core.service.submit("reverse", "one", connection=transaction)
    then = await core.service.submit("reverse", "two", after=[first.id], connection=transaction)
    assert then.blocked
    with pytest.raises(InvalidInput, match="does not exist"):
        await core.service.submit("reverse", "three", after=[first.id + 100], connection=transaction)
    mine = await core.service.submit("reverse", "own", owner="ann")
    with pytest.raises(InvalidInput, match="does not exist"):  # another owner's task is not to be seen
        await core.service.submit("reverse", "bob's", owner="bob", after=[mine.id], connection=transaction)
