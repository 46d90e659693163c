"""Priorities 0 to 9: checked by the core, stored, and carried by every message of a task."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from taskcore import HandlerRegistry, InvalidInput, Sweeper, TaskProcessor, TaskService
from taskcore.adapters.memory import MemoryDatabase, MemoryQueue
from taskcore.adapters.memory.queue import MemoryDelivery
from taskcore.config import CoreConfig
from taskcore.model.idempotency import request_hash
from taskcore.model.messages import decode_task_message
from taskcore.model.task import NewTask, check_priority
from tests.core import LoopClock, ManualClock


async def take_all(queue: MemoryQueue) -> list[MemoryDelivery]:
    """Every waiting message, in delivery order, acked."""
    taken = []
    async with queue.consume(prefetch=1) as consumer:
        while queue.depth:
            delivery = await consumer.next()
            taken.append(delivery)
            await delivery.ack()
    return taken


@pytest.mark.parametrize("priority", [0, 5, 9])
def test_priorities_from_0_to_9_are_valid(priority: int) -> None:
    assert check_priority(priority) == priority


@pytest.mark.parametrize("priority", [-1, 10, 1.0, True, "9", None])
def test_other_priorities_are_invalid_input(priority: object) -> None:
    with pytest.raises(InvalidInput, match="priority must be an integer from 0 to 9"):
        check_priority(priority)
    now = datetime.now(UTC)
    with pytest.raises(InvalidInput):
        NewTask(type="t", input=None, max_attempts=1, run_at=now, created_at=now, priority=priority)  # type: ignore[arg-type]


async def test_submit_stores_the_priority_and_refuses_a_bad_one(
    service: TaskService, db: MemoryDatabase
) -> None:
    task = await service.submit("reverse", "a", priority=7)
    assert task.priority == 7
    assert db.tasks[task.id] == task
    assert (await service.submit("reverse", "b")).priority == 0
    with pytest.raises(InvalidInput):
        await service.submit("reverse", "c", priority=10)
    with pytest.raises(InvalidInput):
        await service.submit_once("reverse", "c", idempotency_key="k", priority=-1)
    assert len(db.tasks) == 2  # the refused ones wrote nothing


async def test_the_idempotency_fingerprint_covers_a_priority() -> None:
    assert request_hash("reverse", "a") == request_hash("reverse", "a", priority=0)
    assert request_hash("reverse", "a") != request_hash("reverse", "a", priority=3)


async def test_the_memory_queue_delivers_higher_priorities_first_fifo_within_one() -> None:
    queue = MemoryQueue()
    for body, priority in [(b"a0", 0), (b"b9", 9), (b"c0", 0), (b"d5", 5), (b"e9", 9), (b"f", 99)]:
        await queue.publish(body, priority=priority)
    taken = await take_all(queue)
    assert [d.body for d in taken] == [b"b9", b"e9", b"f", b"d5", b"a0", b"c0"]  # above 9 counts as 9


async def test_a_requeued_message_goes_back_to_the_head_of_its_priority() -> None:
    queue = MemoryQueue()
    for body, priority in [(b"low", 0), (b"high", 9), (b"high2", 9)]:
        await queue.publish(body, priority=priority)
    async with queue.consume(prefetch=1) as consumer:
        first = await consumer.next()
        assert first.body == b"high"
        await first.requeue()
    assert [d.body for d in await take_all(queue)] == [b"high", b"high2", b"low"]


@pytest.mark.looptime
async def test_a_delayed_message_keeps_its_priority_once_due() -> None:
    queue = MemoryQueue(LoopClock())  # due by the loop's (fake) time: the queue's own timer releases it
    await queue.publish(b"later", delay=timedelta(milliseconds=50), priority=8)
    await queue.publish(b"now", priority=1)
    assert (queue.delayed, queue.depth) == (1, 1)  # held back until due
    await asyncio.sleep(0.15)
    assert (queue.delayed, queue.depth) == (0, 2)
    assert [(d.body, d.priority) for d in await take_all(queue)] == [(b"later", 8), (b"now", 1)]
    await queue.close()


async def test_dispatch_publishes_with_the_task_priority(service: TaskService, queue: MemoryQueue) -> None:
    low = await service.submit("reverse", "low", priority=1)
    high = await service.submit("reverse", "high", priority=9)
    assert [(decode_task_message(d.body), d.priority) for d in await take_all(queue)] == [
        (high.id, 9),
        (low.id, 1),
    ]


async def test_the_sweeper_and_retries_publish_with_the_stored_priority(
    service: TaskService,
    processor: TaskProcessor,
    sweeper: Sweeper,
    queue: MemoryQueue,
    clock: ManualClock,
    registry: HandlerRegistry,
    config: CoreConfig,
) -> None:
    @registry.handler
    async def flaky(_: str) -> None:
        raise RuntimeError("try again")

    queue.available = False  # the broker is down at submit: the sweeper publishes later
    task = await service.submit("flaky", "x", priority=6)
    queue.available = True
    clock.advance(config.redispatch_grace_s + 1)
    assert (await sweeper.sweep_once()).redispatched == 1
    async with queue.consume(prefetch=1) as consumer:
        swept = await consumer.next()
        assert (decode_task_message(swept.body), swept.priority) == (task.id, 6)
        await processor.process(swept)  # fails; the retry is published with a delay
    assert (queue.delayed, queue.depth) == (1, 0)  # not due yet by the core's clock
    clock.advance(1)  # past the retry's backoff (at most 0.05 s in quick_config)
    assert queue.release_due() == 1
    retry = await take_all(queue)
    assert [(decode_task_message(d.body), d.priority) for d in retry] == [(task.id, 6)]
    await queue.close()
