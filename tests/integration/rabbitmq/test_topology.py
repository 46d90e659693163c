"""What the adapter declares: durable queues with the agreed arguments, persistent messages, delay buckets."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelPreconditionFailed

from taskcore.adapters.rabbitmq import RabbitQueue
from taskcore.adapters.rabbitmq.topology import (
    WORK_QUEUE_ARGUMENTS,
    delay_bucket_ms,
    delay_queue,
    delay_queue_arguments,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("delay", "bucket_ms"),
    [
        (timedelta(microseconds=1), 1),
        (timedelta(milliseconds=99), 99),
        (timedelta(microseconds=99_001), 100),
        (timedelta(milliseconds=101), 110),
        (timedelta(milliseconds=1234), 1300),
        (timedelta(seconds=1), 1000),
        (timedelta(seconds=61), 61_000),
        (timedelta(seconds=61.5), 62_000),
        (timedelta(hours=1), 3_600_000),
    ],
)
def test_delay_buckets_round_up_to_two_significant_digits(delay: timedelta, bucket_ms: int) -> None:
    assert delay_bucket_ms(delay) == bucket_ms
    assert bucket_ms >= delay / timedelta(milliseconds=1)
    assert bucket_ms <= max(1.0, delay / timedelta(milliseconds=1) * 1.1)


def test_a_delay_beyond_the_brokers_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than"):
        delay_bucket_ms(timedelta(days=60))


async def assert_declared_as(broker: AbstractConnection, name: str, arguments: dict[str, Any] | None) -> None:
    """Re-declaring with equal settings succeeds; with durable=False the broker refuses."""
    async with broker.channel() as channel:
        await channel.declare_queue(name, durable=True, arguments=arguments)
    channel = await broker.channel()
    with pytest.raises(ChannelPreconditionFailed):
        await channel.declare_queue(name, durable=False, arguments=arguments)


async def first_message(
    broker: AbstractConnection, name: str, seconds: float = 5.0
) -> AbstractIncomingMessage:
    async with broker.channel() as channel:
        queue = await channel.declare_queue(name, passive=True)
        arrived: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()

        async def on_message(message: AbstractIncomingMessage) -> None:
            if not arrived.done():
                arrived.set_result(message)

        await queue.consume(on_message, no_ack=True)
        return await asyncio.wait_for(arrived, seconds)


async def test_work_and_dead_letter_queues_are_durable(
    queue: RabbitQueue, broker: AbstractConnection
) -> None:
    await assert_declared_as(broker, queue.queue_name, WORK_QUEUE_ARGUMENTS)
    await assert_declared_as(broker, queue.dead_letter_queue_name, None)


async def test_work_queue_is_declared_with_max_priority(
    queue: RabbitQueue, broker: AbstractConnection
) -> None:
    channel = await broker.channel()
    with pytest.raises(ChannelPreconditionFailed, match="x-max-priority"):
        await channel.declare_queue(queue.queue_name, durable=True)


async def test_open_twice_and_a_second_adapter_declare_alike(queue: RabbitQueue, make_queue: Any) -> None:
    await queue.open()
    other: RabbitQueue = await make_queue()
    await other.publish(b"1")
    assert await queue.depth() == 1


async def test_messages_are_persistent(queue: RabbitQueue, broker: AbstractConnection) -> None:
    await queue.publish(b"7")
    message = await first_message(broker, queue.queue_name)
    assert (message.body, message.delivery_mode) == (b"7", DeliveryMode.PERSISTENT)


async def test_delayed_messages_wait_in_a_durable_bucket_and_stay_persistent(
    queue: RabbitQueue, broker: AbstractConnection
) -> None:
    await queue.publish(b"8", delay=timedelta(milliseconds=234))
    bucket = delay_queue(queue.queue_name, 240)
    assert bucket in queue.declared_queues
    await assert_declared_as(broker, bucket, delay_queue_arguments(queue.queue_name, 240))
    message = await first_message(broker, queue.queue_name)
    assert (message.body, message.delivery_mode) == (b"8", DeliveryMode.PERSISTENT)


async def test_depths_count_ready_and_dead_lettered_messages(queue: RabbitQueue) -> None:
    assert (await queue.depth(), await queue.dead_letter_depth()) == (0, 0)
    for n in range(3):
        await queue.publish(str(n).encode())
    async with queue.consume(prefetch=1) as consumer:
        await (await consumer.next()).dead_letter("test")
    assert (await queue.depth(), await queue.dead_letter_depth()) == (2, 1)


async def test_a_past_due_delay_publishes_straight_to_the_work_queue(queue: RabbitQueue) -> None:
    await queue.publish(b"1", delay=timedelta(seconds=-3))
    await queue.publish(b"2", delay=timedelta(0))
    assert await queue.depth() == 2
    assert queue.declared_queues == {queue.queue_name, queue.dead_letter_queue_name}


async def test_a_bucket_deleted_behind_the_adapters_back_is_declared_again(
    queue: RabbitQueue, broker: AbstractConnection
) -> None:
    await queue.publish(b"1", delay=timedelta(milliseconds=100))
    async with broker.channel() as channel:
        await channel.queue_delete(delay_queue(queue.queue_name, 100))
    await queue.publish(b"2", delay=timedelta(milliseconds=100))
    message = await first_message(broker, queue.queue_name)
    assert message.body == b"2"
