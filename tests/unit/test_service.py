"""Submit, read, cancel and retry on the memory adapters: write-through, read-through, fallbacks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskcore import (
    InvalidInput,
    InvalidTransition,
    TaskNotFound,
    TaskService,
    TaskStatus,
    UnknownTaskType,
    UnstorableValue,
)
from taskcore.adapters.memory import MemoryCache, MemoryDatabase, MemoryQueue
from taskcore.model.changes import TaskChange
from taskcore.model.messages import decode_task_message
from tests.core import Core, ManualClock, build_core


async def test_submit_stores_publishes_and_writes_through(clock: ManualClock) -> None:
    core = build_core(clock=clock, cache=MemoryCache(monotonic=lambda: 1000.0))
    task = await core.service.submit("reverse", "hello")
    assert task.status is TaskStatus.PENDING
    assert core.db.tasks[task.id] == task
    assert core.queue.published == 1
    async with core.queue.consume(prefetch=1) as consumer:
        delivery = await consumer.next()
        assert decode_task_message(delivery.body) == task.id
    assert core.cache.entries[task.id][0] == task
    assert core.cache.ttl(task.id) == core.config.active_ttl_s
    assert core.changes.announced == []  # nobody can wait on a task whose id was not out yet
    await core.aclose()
    assert core.db.dispatched_at == {task.id: clock.now()}  # the broker's confirmation, recorded


async def test_rejected_input_writes_nothing(
    service: TaskService, db: MemoryDatabase, queue: MemoryQueue, cache: MemoryCache
) -> None:
    with pytest.raises(InvalidInput):
        await service.submit("reverse", 42)
    with pytest.raises(UnknownTaskType):
        await service.submit("nope", "x")
    with pytest.raises(InvalidInput):
        await service.submit("reverse", "x", priority=10)
    assert db.tasks == {}
    assert queue.published == 0
    assert cache.entries == {}


async def test_submit_survives_a_broker_outage(core: Core) -> None:
    core.queue.available = False
    task = await core.service.submit("reverse", "hello")
    assert core.db.tasks[task.id].status is TaskStatus.PENDING
    assert core.queue.published == 0
    await core.aclose()
    assert task.id not in core.db.dispatched_at  # unconfirmed: the sweeper publishes it later


async def test_submit_with_a_delay_is_not_due_yet(core: Core, clock: ManualClock) -> None:
    task = await core.service.submit("reverse", "hello", delay=timedelta(seconds=10))
    assert task.run_at - task.created_at == timedelta(seconds=10)
    assert (core.queue.depth, core.queue.delayed) == (0, 1)
    clock.advance(10)
    assert core.queue.release_due() == 1
    assert core.queue.depth == 1


async def test_get_reads_the_cache_first(
    service: TaskService, db: MemoryDatabase, cache: MemoryCache
) -> None:
    task = await service.submit("reverse", "hello")
    db.available = False  # proves the database is not asked
    assert await service.get(task.id) == task
    assert cache.hits == 1


async def test_get_falls_back_to_the_database_and_refills(service: TaskService, cache: MemoryCache) -> None:
    task = await service.submit("reverse", "hello")
    cache.entries.clear()
    assert await service.get(task.id) == task
    assert cache.entries[task.id][0] == task


async def test_get_works_while_the_cache_is_down(service: TaskService, cache: MemoryCache) -> None:
    cache.available = False
    task = await service.submit("reverse", "hello")
    assert await service.get(task.id) == task
    assert cache.entries == {}


async def test_get_unknown(service: TaskService) -> None:
    with pytest.raises(TaskNotFound):
        await service.get(404)


async def test_get_hides_other_owners_tasks(service: TaskService) -> None:
    task = await service.submit("reverse", "hello", owner="alice")
    assert (await service.get(task.id, owner="alice")).id == task.id
    with pytest.raises(TaskNotFound):
        await service.get(task.id, owner="bob")


async def test_input_the_repository_cannot_hold_is_refused(
    service: TaskService, db: MemoryDatabase, queue: MemoryQueue
) -> None:
    with pytest.raises(UnstorableValue):
        await service.submit("reverse", "a\x00b")
    assert db.tasks == {}
    assert queue.published == 0


async def test_cancel_stores_caches_and_announces(core: Core, clock: ManualClock) -> None:
    task = await core.service.submit("reverse", "hello")
    clock.advance(1)
    cancelled = await core.service.cancel(task.id)
    assert cancelled.status is TaskStatus.CANCELLED
    assert cancelled.finished_at == clock.now()
    assert core.db.tasks[task.id] == cancelled
    assert core.cache.entries[task.id][0] == cancelled
    await core.aclose()
    assert core.changes.announced == [TaskChange(task.id, 2, TaskStatus.CANCELLED)]
    assert core.queue.published == 1  # only the submit's wake-up


async def test_retry_gives_a_cancelled_task_a_new_run(core: Core, clock: ManualClock) -> None:
    task = await core.service.submit("reverse", "hello")
    await core.service.cancel(task.id)
    clock.advance(5)
    again = await core.service.retry(task.id)
    assert (again.status, again.attempts, again.version) == (TaskStatus.PENDING, 0, 3)
    assert again.run_at == clock.now()
    assert core.db.tasks[task.id] == again
    assert core.cache.entries[task.id][0] == again
    assert core.queue.published == 2  # its new wake-up
    await core.aclose()
    assert core.db.dispatched_at[task.id] == clock.now()
    assert [c.status for c in core.changes.announced] == [TaskStatus.CANCELLED, TaskStatus.PENDING]


async def test_retry_and_cancel_refuse_what_the_rules_refuse(core: Core) -> None:
    task = await core.service.submit("reverse", "hello")
    with pytest.raises(InvalidTransition):
        await core.service.retry(task.id)  # PENDING: nothing to retry
    await core.service.cancel(task.id)
    with pytest.raises(InvalidTransition):
        await core.service.cancel(task.id)
    assert core.db.tasks[task.id].status is TaskStatus.CANCELLED
    assert core.queue.published == 1


async def test_cancel_and_retry_of_someone_elses_task_are_not_found(core: Core) -> None:
    task = await core.service.submit("reverse", "hello", owner="alice")
    with pytest.raises(TaskNotFound):
        await core.service.cancel(task.id, owner="bob")
    with pytest.raises(TaskNotFound):
        await core.service.retry(404)
    assert core.db.tasks[task.id] == task
