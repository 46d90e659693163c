"""Named queues on RabbitMQ: each one a work queue of its own, with its own
dead-letter queue and delay buckets, declared at ``open()``."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aio_pika.abc import AbstractConnection

from taskcore.adapters.rabbitmq import RabbitQueue
from taskcore.adapters.rabbitmq.topology import WORK_QUEUE_ARGUMENTS, delay_queue
from tests.integration.rabbitmq.conftest import MakeQueue
from tests.integration.rabbitmq.test_topology import assert_declared_as


async def test_every_queue_of_the_registry_is_declared_at_open(
    make_queue: MakeQueue, queue_name: str, broker: AbstractConnection
) -> None:
    queue = await make_queue(queues=["default", "emails", "reports"])
    assert queue.work_queue("emails") == f"{queue_name}.emails"
    for name in (queue_name, f"{queue_name}.emails", f"{queue_name}.reports"):
        await assert_declared_as(broker, name, WORK_QUEUE_ARGUMENTS)
        await assert_declared_as(broker, f"{name}.dlq", None)


async def test_messages_wait_in_their_own_queue_and_a_consumer_takes_only_its_queues(
    make_queue: MakeQueue,
) -> None:
    queue = await make_queue(queues=["default", "emails"])
    await queue.publish(b"1", queue="emails")
    await queue.publish(b"2", queue="emails")
    await queue.publish(b"3")
    await queue.publish(b"4", queue="emails", delay=timedelta(milliseconds=200))  # its own bucket
    assert (await queue.depth("emails"), await queue.depth()) == (2, 1)
    assert delay_queue(queue.work_queue("emails"), 200) in queue.declared_queues
    async with queue.consume(prefetch=10, queues=["emails"]) as consumer:
        bodies = set()
        for _ in range(3):
            delivery = await asyncio.wait_for(consumer.next(), 10)
            bodies.add(delivery.body)
            await delivery.ack()
        assert bodies == {b"1", b"2", b"4"}
        nothing = asyncio.ensure_future(consumer.next())
        await asyncio.sleep(0.5)
        assert not nothing.done()  # the default queue's message is not its to take
        nothing.cancel()
    assert await queue.depth() == 1


async def test_a_dead_letter_goes_to_its_own_queues_dead_letter_queue(make_queue: MakeQueue) -> None:
    queue = await make_queue(queues=["default", "emails"])
    await queue.publish(b"not a task", queue="emails")
    async with queue.consume(prefetch=1, queues=["default", "emails"]) as consumer:
        delivery = await asyncio.wait_for(consumer.next(), 10)
        await delivery.dead_letter("poison")
    assert (await queue.dead_letter_depth("emails"), await queue.dead_letter_depth()) == (1, 0)


async def test_a_queue_not_declared_yet_is_declared_on_its_first_publish(
    make_queue: MakeQueue, queue_name: str, broker: AbstractConnection
) -> None:
    """An API whose registry knows a queue the worker's did not (a rolling deploy)."""
    queue: RabbitQueue = await make_queue()
    await queue.publish(b"1", queue="late")
    await assert_declared_as(broker, f"{queue_name}.late", WORK_QUEUE_ARGUMENTS)
    assert await queue.depth("late") == 1


async def test_a_consumer_taken_off_a_queue_hands_back_what_it_held_and_receives_none_until_put_back(
    make_queue: MakeQueue,
) -> None:
    """What a worker does when a queue is paused, and resumed."""
    queue = await make_queue(queues=["default", "emails"])
    async with queue.consume(prefetch=10, queues=["default", "emails"]) as consumer:
        for n in range(3):
            await queue.publish(str(n).encode(), queue="emails")
        for _ in range(100):  # prefetched into the consumer's inbox, not handed out yet
            if consumer.held == 3:
                break
            await asyncio.sleep(0.05)
        assert consumer.held == 3
        await consumer.consume_only(["default"])
        assert consumer.held == 0
        for _ in range(100):
            if await queue.depth("emails") == 3:
                break
            await asyncio.sleep(0.05)
        assert await queue.depth("emails") == 3  # back at the broker, waiting
        await queue.publish(b"9")  # the other queue carries on
        delivery = await asyncio.wait_for(consumer.next(), 10)
        assert delivery.body == b"9"
        await delivery.ack()
        await consumer.consume_only(["default", "emails"])
        bodies = set()
        for _ in range(3):
            delivery = await asyncio.wait_for(consumer.next(), 10)
            bodies.add(delivery.body)
            await delivery.ack()
        assert bodies == {b"0", b"1", b"2"}
