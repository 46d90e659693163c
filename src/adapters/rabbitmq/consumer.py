"""Deliveries and the consumer that hands them out one ``next()`` at a time.

aio-pika pushes messages into a callback; the worker pulls. An ``asyncio.Queue``
sits in between, so a cancelled ``next()`` (the worker stopping, a test's
timeout) loses nothing. The broker's prefetch bounds how many messages wait
in it unsettled.

When the connection drops, the broker requeues every unacked message of the
dead channel and the robust connection re-subscribes on a new one. Messages
still waiting in the inbox belong to the dead channel: ``next()`` skips them,
since the broker delivers them again. Deliveries already handed out cannot be
settled any more; ``ack``/``requeue`` on them log and return, and the worker's
duplicate-safe claim drops the redelivered copy once the task is finished.

A message that wakes several tasks is handed out as one delivery per task
(``wake_up_parts``), settled when all of them are.

A message delayed beyond the longest delay bucket arrives before its due time
(``topology.DUE_HEADER``): ``next()`` sends it round again for the rest of its
delay instead of handing it out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta
from functools import partial

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
)
from aiormq.exceptions import ChannelInvalidStateError

from taskcore.adapters import wake_up_parts
from taskcore.adapters.rabbitmq import topology
from taskcore.adapters.rabbitmq.errors import BROKER_ERRORS, broker_errors
from taskcore.adapters.wake_up_parts import WakeUpPart
from taskcore.errors import QueueUnavailable

log = logging.getLogger("taskcore.adapters.rabbitmq")

DeadLetterPublisher = Callable[[bytes, str, str], Awaitable[None]]  # body, reason, work queue
EarlyPublisher = Callable[[AbstractIncomingMessage, str, timedelta], Awaitable[None]]  # ..., work queue, ...


class RabbitDelivery:
    def __init__(self, message: AbstractIncomingMessage, consumer: RabbitConsumer, work: str) -> None:
        self._message = message
        self._consumer = consumer
        self.work = work  # the work queue it came from: its dead letters go to that one's
        self.settled = False

    @property
    def body(self) -> bytes:
        return self._message.body

    @property
    def redelivered(self) -> bool:
        return bool(self._message.redelivered)

    def _claim(self) -> bool:
        """Settle at most once, so a second ack or requeue is a no-op rather than an error."""
        if self.settled:
            return False
        self.settled = True
        self._consumer._unsettled.discard(self)
        return True

    async def ack(self) -> None:
        if self._claim():
            await self._quietly("ack", self._message.ack())

    async def requeue(self) -> None:
        if self._claim():
            await self._quietly("requeue", self._message.nack(requeue=True))

    async def dead_letter(self, reason: str) -> None:
        if not self._claim():
            return
        try:
            await self._consumer._dead_letter(self.body, reason, self.work)
        except BaseException:
            self.settled = False  # still ours: the caller may requeue it
            self._consumer._unsettled.add(self)
            raise
        await self._quietly("ack after dead-lettering", self._message.ack())

    async def _quietly(self, what: str, settle: Awaitable[None]) -> None:
        try:
            await settle
        except BROKER_ERRORS as exc:
            # The channel that delivered the message is gone, and the broker
            # requeued the message with it: it comes back, possibly as a duplicate.
            log.warning(
                "%s failed (%s: %s); the broker redelivers the message", what, type(exc).__name__, exc
            )


class RabbitConsumer:
    def __init__(self, dead_letter: DeadLetterPublisher, send_round: EarlyPublisher | None = None) -> None:
        self._dead_letter = dead_letter
        self._send_round = send_round
        self._inbox: asyncio.Queue[tuple[AbstractIncomingMessage, str] | None] = asyncio.Queue()
        self._unsettled: set[RabbitDelivery] = set()
        # The parts of a message waking several tasks, not handed out yet (its first part was).
        self._parts: deque[tuple[WakeUpPart, RabbitDelivery]] = deque()
        self._subscription: tuple[AbstractRobustConnection, AbstractRobustChannel] | None = None
        self._queues: dict[str, AbstractRobustQueue] = {}  # named queue -> its declared work queue
        self._tags: dict[str, str] = {}  # named queue -> consumer tag, while receiving from it

    async def subscribe(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractRobustChannel,
        queues: dict[str, AbstractRobustQueue],
    ) -> None:
        """Receive from each of ``queues`` (named queue -> its work queue,
        declared on ``channel``); the connection and channel are where
        deliveries come from, so ``connected`` can tell when they cannot."""
        self._subscription = (connection, channel)
        self._queues = dict(queues)
        await self.consume_only(self._queues)

    async def consume_only(self, queues: Collection[str]) -> None:
        """Receive from these of its queues only: cancel the others'
        subscriptions (a robust channel then does not restore them) and hand
        back what came from them and waits in the inbox."""
        wanted = set(queues)
        with broker_errors("cannot change the queues consumed"):
            for name, queue in self._queues.items():
                tag = self._tags.get(name)
                if name in wanted and tag is None:
                    self._tags[name] = await queue.consume(self.receiver(queue.name), no_ack=False)
                elif name not in wanted and tag is not None:
                    del self._tags[name]
                    await queue.cancel(tag)
        active = {self._queues[name].name for name in self._tags}
        for part, _ in list(self._parts):  # a copy: next() may take parts while a requeue awaits
            if part.source not in active:
                await part.requeue()  # its message goes back whole once its parts are settled
        self._parts = deque((part, whole) for part, whole in self._parts if not part.settled)
        kept: list[tuple[AbstractIncomingMessage, str] | None] = []
        while not self._inbox.empty():
            received = self._inbox.get_nowait()
            if received is not None and received[1] not in active:
                await _requeue_quietly(received[0])
            else:
                kept.append(received)
        for received in kept:
            self._inbox.put_nowait(received)

    @property
    def connected(self) -> bool:
        """Connected with the channel open. (A subscription the broker cancels,
        say when the queue is deleted, makes aio-pika recover the channel.)"""
        if self._subscription is None:
            return False
        connection, channel = self._subscription
        return connection.connected.is_set() and not channel.is_closed

    @property
    def held(self) -> int:
        return self._inbox.qsize() + len(self._unsettled)

    def receiver(self, work: str) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        """The callback for the subscription to the work queue ``work``."""
        return partial(self.on_message, work=work)

    async def on_message(self, message: AbstractIncomingMessage, work: str) -> None:
        self._inbox.put_nowait((message, work))

    async def next(self) -> RabbitDelivery | WakeUpPart:
        while self._parts:
            part, whole = self._parts.popleft()
            if part.settled:
                continue
            if _from_dead_channel(whole._message):
                # The broker has the whole message back with its channel: it
                # is no longer held here, though its parts will never settle.
                whole.settled = True
                self._unsettled.discard(whole)
                continue
            return part
        while True:
            received = await self._inbox.get()
            if received is None:
                self._inbox.put_nowait(None)  # every later call fails too
                raise QueueUnavailable("the consumer is closed")
            message, work = received
            if _from_dead_channel(message):
                continue
            early_by = topology.time_to_due(message.headers)
            if early_by is not None and await self._sent_round(message, work, early_by):
                continue
            delivery = RabbitDelivery(message, self, work)
            self._unsettled.add(delivery)
            parts = wake_up_parts.split(
                message.body,
                ack=delivery.ack,
                requeue=delivery.requeue,
                dead_letter_one=partial(self._dead_letter_part, work=work),
                source=work,
            )
            if parts is None:
                return delivery
            self._parts.extend((part, delivery) for part in parts[1:])
            return parts[0]

    async def _dead_letter_part(self, body: bytes, reason: str, *, work: str) -> None:
        await self._dead_letter(body, reason, work)

    async def _sent_round(self, message: AbstractIncomingMessage, work: str, early_by: timedelta) -> bool:
        """Publish an early message again for the rest of its delay, then ack it.
        ``False`` if that failed: it is handed out, the worker finds its task not
        due and drops it, and the sweeper dispatches the task once overdue."""
        if self._send_round is None:
            return False
        try:
            await self._send_round(message, work, early_by)
        except QueueUnavailable as exc:
            log.warning("a message %s early could not be sent round again: %s", early_by, exc)
            return False
        try:
            await message.ack()
        except BROKER_ERRORS as exc:  # redelivered with the channel: one harmless extra wake-up
            log.warning("ack of a message sent round again failed (%s: %s)", type(exc).__name__, exc)
        return True

    def close(self) -> None:
        """Stop handing out messages; what is still unsettled goes back with the channel."""
        for delivery in self._unsettled:
            delivery.settled = True
        self._unsettled.clear()
        self._parts.clear()
        self._subscription = None
        self._inbox.put_nowait(None)


async def _requeue_quietly(message: AbstractIncomingMessage) -> None:
    try:
        await message.nack(requeue=True)
    except BROKER_ERRORS as exc:  # the channel is gone: the broker requeued it anyway
        log.debug("handing back a message failed (%s: %s)", type(exc).__name__, exc)


def _from_dead_channel(message: AbstractIncomingMessage) -> bool:
    try:
        return message.channel.is_closed
    except ChannelInvalidStateError:
        return True
