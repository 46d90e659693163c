"""Submit and read on the memory adapters: write-through, read-through, fallbacks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskcore import InvalidInput, TaskNotFound, TaskService, TaskStatus, UnknownTaskType
from taskcore.adapters.memory import MemoryCache, MemoryQueue, MemoryRepository
from taskcore.messages import decode_task_message


async def test_submit_stores_publishes_and_writes_through(
    service: TaskService, repository: MemoryRepository, queue: MemoryQueue, cache: MemoryCache
) -> None:
    task = await service.submit("reverse", "hello")
    assert task.status is TaskStatus.PENDING
    assert repository.tasks[task.id] == task
    assert queue.published == 1
    async with queue.consume(prefetch=1) as consumer:
        delivery = await consumer.next()
        assert decode_task_message(delivery.body) == task.id
    assert cache.entries[task.id][0] == task
    assert cache.ttl(task.id) == pytest.approx(60, abs=1)


async def test_rejected_input_writes_nothing(
    service: TaskService, repository: MemoryRepository, queue: MemoryQueue, cache: MemoryCache
) -> None:
    with pytest.raises(InvalidInput):
        await service.submit("reverse", 42)
    with pytest.raises(UnknownTaskType):
        await service.submit("nope", "x")
    assert repository.tasks == {}
    assert queue.published == 0
    assert cache.entries == {}


async def test_submit_survives_a_broker_outage(
    service: TaskService, repository: MemoryRepository, queue: MemoryQueue
) -> None:
    queue.available = False
    task = await service.submit("reverse", "hello")
    assert repository.tasks[task.id].status is TaskStatus.PENDING


async def test_submit_with_a_delay_is_not_due_yet(service: TaskService) -> None:
    task = await service.submit("reverse", "hello", delay=timedelta(seconds=10))
    assert task.run_at - task.created_at == timedelta(seconds=10)


async def test_get_reads_the_cache_first(
    service: TaskService, repository: MemoryRepository, cache: MemoryCache
) -> None:
    task = await service.submit("reverse", "hello")
    repository.available = False  # proves the database is not asked
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


async def test_get_unknown(service: TaskService) -> None:
    with pytest.raises(TaskNotFound):
        await service.get(404)


async def test_input_the_repository_cannot_hold_is_refused(
    service: TaskService, repository: MemoryRepository, queue: MemoryQueue
) -> None:
    from taskcore import UnstorableValue

    with pytest.raises(UnstorableValue):
        await service.submit("reverse", "a\x00b")
    assert repository.tasks == {}
    assert queue.published == 0
