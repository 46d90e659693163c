"""RabbitMQ's consumer and messages that wake several tasks, on stand-in messages.

The broker side is in the queue contract (``tests/contracts/queue.py``, run
against RabbitMQ); these are the channel deaths a test cannot time against a
real broker: parts of a message whose channel died in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskcore.adapters.rabbitmq.consumer import RabbitConsumer


@dataclass
class Channel:
    is_closed: bool = False


@dataclass
class Message:
    body: bytes
    channel: Channel
    headers: dict[str, Any] = field(default_factory=dict)
    redelivered: bool = False
    settled: list[str] = field(default_factory=list)

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append("requeue" if requeue else "reject")


async def no_dead_letters(body: bytes, reason: str, work: str) -> None:
    raise AssertionError("nothing is dead-lettered here")


async def test_parts_of_a_message_whose_channel_died_are_skipped_and_it_is_no_longer_held() -> None:
    consumer = RabbitConsumer(no_dead_letters)
    channel = Channel()
    message = Message(b"1 2 3", channel)
    await consumer.on_message(message, work="q")  # type: ignore[arg-type]
    first = await consumer.next()
    assert first.body == b"1"
    assert consumer.held == 1
    channel.is_closed = True  # the broker has the message back
    await first.ack()
    later = Message(b"4", Channel())
    await consumer.on_message(later, work="q")  # type: ignore[arg-type]
    assert (await consumer.next()).body == b"4"  # parts 2 and 3 skipped
    assert consumer.held == 1  # the new message only: the dead one is not counted any more
    assert message.settled == []  # nothing sent on the dead channel for its parts


async def test_a_message_is_acked_once_every_part_is() -> None:
    consumer = RabbitConsumer(no_dead_letters)
    message = Message(b"1 2", Channel())
    await consumer.on_message(message, work="q")  # type: ignore[arg-type]
    one, two = await consumer.next(), await consumer.next()
    await one.ack()
    assert message.settled == []
    assert consumer.held == 1
    await two.ack()
    assert message.settled == ["ack"]
    assert consumer.held == 0


async def test_pausing_hands_back_the_parts_of_a_paused_queue_whole() -> None:
    consumer = RabbitConsumer(no_dead_letters)
    message = Message(b"1 2 3", Channel())
    await consumer.on_message(message, work="q")  # type: ignore[arg-type]
    one = await consumer.next()
    await consumer.consume_only([])  # every queue paused: parts 2 and 3 go back
    assert message.settled == []  # part 1 is still out
    await one.ack()
    assert message.settled == ["requeue"]  # the whole message, once its last part settled
    assert consumer.held == 0
