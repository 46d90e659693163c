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

A message delayed beyond the longest delay bucket arrives before its due time
(``topology.DUE_HEADER``): ``next()`` sends it round again for the rest of its
delay instead of handing it out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from aiormq.exceptions import ChannelInvalidStateError

from taskcore.adapters.rabbitmq import topology
from taskcore.adapters.rabbitmq.errors import BROKER_ERRORS
from taskcore.errors import QueueUnavailable

log = logging.getLogger("taskcore.adapters.rabbitmq")

DeadLetterPublisher = Callable[[bytes, str], Awaitable[None]]
EarlyPublisher = Callable[[AbstractIncomingMessage, timedelta], Awaitable[None]]


class RabbitDelivery:
    def __init__(self, message: AbstractIncomingMessage, consumer: RabbitConsumer) -> None:
        self._message = message
        self._consumer = consumer
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
            await self._consumer._dead_letter(self.body, reason)
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
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._unsettled: set[RabbitDelivery] = set()
        self._subscription: tuple[AbstractRobustConnection, AbstractRobustChannel] | None = None

    def subscribed(self, connection: AbstractRobustConnection, channel: AbstractRobustChannel) -> None:
        """Where deliveries come from, so ``connected`` can tell when they cannot."""
        self._subscription = (connection, channel)

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

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(message)

    async def next(self) -> RabbitDelivery:
        while True:
            message = await self._inbox.get()
            if message is None:
                self._inbox.put_nowait(None)  # every later call fails too
                raise QueueUnavailable("the consumer is closed")
            if _from_dead_channel(message):
                continue
            early_by = topology.time_to_due(message.headers)
            if early_by is not None and await self._sent_round(message, early_by):
                continue
            delivery = RabbitDelivery(message, self)
            self._unsettled.add(delivery)
            return delivery

    async def _sent_round(self, message: AbstractIncomingMessage, early_by: timedelta) -> bool:
        """Publish an early message again for the rest of its delay, then ack it.
        ``False`` if that failed: it is handed out, the worker finds its task not
        due and drops it, and the sweeper dispatches the task once overdue."""
        if self._send_round is None:
            return False
        try:
            await self._send_round(message, early_by)
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
        self._subscription = None
        self._inbox.put_nowait(None)


def _from_dead_channel(message: AbstractIncomingMessage) -> bool:
    try:
        return message.channel.is_closed
    except ChannelInvalidStateError:
        return True
