"""The task queue on RabbitMQ, through one robust aio-pika connection.

A robust connection reconnects by itself after a broker restart or a cut
connection and re-opens its channels, re-declares their queues and
re-subscribes their consumers, so a waiting ``next()`` simply keeps waiting.
Publishing uses one channel with publisher confirms: ``publish`` returns only
when the broker has taken responsibility for the (persistent) message, and
fails with ``QueueUnavailable`` after ``publish_timeout_s`` while the broker
is away. That is safe because a message is only a wake-up: the sweeper
re-dispatches a task whose message never made it.

Each named queue (``taskcore.model.queues``) is a broker queue of its own,
with its own delay and dead-letter queues (``topology.work_queue``); all of
the registry's are declared at ``open()``. Each consumer gets its own
channel, subscribed to the queues it consumes with the prefetch per queue, so
closing it hands its unacked messages back to the broker.

The URL may list the nodes of a cluster, comma-separated; every connection
attempt (the first, and each reconnect) goes to the next node in turn, so a
process carries on through the other nodes when the one it used goes away.
With ``queue_type="quorum"`` the work, delay and dead-letter queues are
quorum queues, replicated over the cluster (``topology``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Collection
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import PublishError
from yarl import URL

from taskcore.adapters.rabbitmq import topology
from taskcore.adapters.rabbitmq.consumer import RabbitConsumer
from taskcore.adapters.rabbitmq.errors import BROKER_ERRORS, broker_errors
from taskcore.errors import QueueUnavailable
from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.model.task import MAX_PRIORITY

log = logging.getLogger("taskcore.adapters.rabbitmq")


class RabbitQueue:
    def __init__(
        self,
        url: str,
        *,
        queue_name: str = "taskcore.tasks",
        queues: Collection[str] = (DEFAULT_QUEUE,),
        connect_timeout_s: float = 5.0,
        publish_timeout_s: float = 5.0,
        connection_name: str = "taskcore",
        reconnect_interval_s: float = 2.0,
        longest_delay_ms: int = topology.LONGEST_BUCKET_MS,
        queue_type: topology.QueueType = "classic",
    ) -> None:
        self._urls = node_urls(url)
        self._queue_type: topology.QueueType = queue_type
        self._work_arguments = topology.work_queue_arguments(queue_type)
        self._queue_name = queue_name  # the default queue's broker queue; the others' names start with it
        self._dlq_name = topology.dead_letter_queue(queue_name)
        self._queues = list(dict.fromkeys([DEFAULT_QUEUE, *queues]))  # declared at open()
        self._connect_timeout_s = connect_timeout_s
        self._publish_timeout_s = publish_timeout_s
        self._connection_name = connection_name
        self._reconnect_interval_s = reconnect_interval_s
        self._longest_delay = timedelta(milliseconds=longest_delay_ms)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._declared: set[str] = set()
        self._buckets = _DelayBuckets(queue_type, self._declared)
        self._consumers: set[RabbitConsumer] = set()
        self._silent_until = 0.0  # loop time until which publishing fails fast

    @property
    def queue_name(self) -> str:
        return self._queue_name

    @property
    def dead_letter_queue_name(self) -> str:
        return self._dlq_name

    @property
    def declared_queues(self) -> frozenset[str]:
        """Every queue this adapter has declared, delay buckets included (for teardown)."""
        return frozenset(self._declared)

    async def open(self) -> None:
        if self._connection is not None:
            return
        # Built by hand rather than through connect_robust() (which does the
        # same) so that a failed or timed-out first attempt can close the
        # connection and stop its background reconnect loop.
        connection = _NodeRotatingConnection(
            self._urls,
            client_properties={"connection_name": self._connection_name},
            reconnect_interval=self._reconnect_interval_s,
        )
        try:
            with broker_errors(f"cannot reach the broker as {self._connection_name!r}"):
                async with asyncio.timeout(self._connect_timeout_s):
                    await connection.connect(timeout=self._connect_timeout_s)
                    channel = connection.channel(publisher_confirms=True, on_return_raises=True)
                    await channel
                    for queue in self._queues:
                        await self._declare_work_queue(channel, self.work_queue(queue))
        except BaseException:
            await _close_quietly(connection, self._connect_timeout_s)
            # The first attempt of the next open() goes to the next node.
            self._urls = self._urls[1:] + self._urls[:1]
            raise
        self._connection, self._channel = connection, channel

    def work_queue(self, queue: str = DEFAULT_QUEUE) -> str:
        """The broker queue of the named queue ``queue``."""
        return topology.work_queue(self._queue_name, queue)

    async def _declare_work_queue(self, channel: AbstractChannel, name: str) -> None:
        """A work queue and its dead-letter queue (delay buckets come with use)."""
        await channel.declare_queue(name, durable=True, arguments=self._work_arguments)
        dlq = topology.dead_letter_queue(name)
        await channel.declare_queue(
            dlq, durable=True, arguments=topology.dead_letter_queue_arguments(self._queue_type)
        )
        self._declared.update((name, dlq))

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is None:
            return
        for consumer in self._consumers:
            consumer.close()
        self._buckets.clear()
        await _close_quietly(connection, self._connect_timeout_s)

    async def ping(self) -> None:
        """Readiness: connected now. A silent network loss shows up after the heartbeat timeout."""
        connection, channel = self._connection, self._channel
        if connection is None or channel is None:
            raise QueueUnavailable("the queue is not open")
        if connection.is_closed or not connection.connected.is_set() or channel.is_closed:
            raise QueueUnavailable("not connected to the broker; reconnecting")

    async def publish(
        self, body: bytes, *, delay: timedelta | None = None, priority: int = 0, queue: str = DEFAULT_QUEUE
    ) -> None:
        """Return once the broker confirmed the message in ``queue``'s work
        queue (or its delay bucket; a queue not declared yet is declared).

        ``priority`` becomes the message's AMQP priority, which it keeps while it
        waits in a delay bucket and when it is dead-lettered from there into the
        work queue (RabbitMQ keeps a dead-lettered message's properties).

        Fails at once while the connection is down, and for ``publish_timeout_s``
        after a publish timed out (a broker that stopped answering without
        closing the connection): callers have stored the task already and the
        sweeper publishes it later, so every submit need not wait out the
        timeout until the heartbeat declares the connection dead.
        """
        channel = self._require_channel()
        connection = self._connection
        if connection is None or not connection.connected.is_set():
            raise QueueUnavailable("not connected to the broker; reconnecting")
        loop = asyncio.get_running_loop()
        if loop.time() < self._silent_until:
            raise QueueUnavailable("the broker stopped confirming; publishing paused briefly")
        try:
            await self._publish(
                channel, body, delay, min(max(priority, 0), MAX_PRIORITY), self.work_queue(queue)
            )
        except QueueUnavailable as exc:
            # Only a broker that stopped answering pauses publishing; a refused
            # or reset connection (a node going away) is reconnected at once,
            # to the next node, and the next publish should try it.
            if isinstance(exc.__cause__, TimeoutError):
                self._silent_until = loop.time() + self._publish_timeout_s
            raise

    async def _publish(
        self, channel: AbstractRobustChannel, body: bytes, delay: timedelta | None, priority: int, work: str
    ) -> None:
        headers: dict[str, Any] | None = None
        if delay is not None and delay > self._longest_delay:
            # Longer than any bucket holds: wait in the longest one, and let the
            # consumer that receives it early send it round again (_send_round).
            headers = {topology.DUE_HEADER: topology.due_ms(delay)}
            delay = self._longest_delay
        message = aio_pika.Message(
            body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, priority=priority, headers=headers
        )
        with broker_errors("the broker did not confirm the message"):
            async with asyncio.timeout(self._publish_timeout_s):
                await channel.ready()
                if work not in self._declared:
                    await self._declare_work_queue(channel, work)
                if delay is None or delay <= timedelta(0):
                    await channel.default_exchange.publish(message, routing_key=work)
                    return
                bucket_ms = topology.delay_bucket_ms(delay)
                routing_key = await self._buckets.declared(channel, work, bucket_ms)
                try:
                    await channel.default_exchange.publish(message, routing_key=routing_key)
                except PublishError:  # unroutable: the bucket expired or was deleted after we cached it
                    log.warning("delay queue %s vanished; declaring it again", routing_key)
                    self._buckets.forget(work, bucket_ms)
                    routing_key = await self._buckets.declared(channel, work, bucket_ms)
                    await channel.default_exchange.publish(message, routing_key=routing_key)

    async def _send_round(self, message: AbstractIncomingMessage, work: str, early_by: timedelta) -> None:
        """Publish a long-delayed message that arrived ``early_by`` before its due time again."""
        channel = self._require_channel()
        priority = min(max(message.priority or 0, 0), MAX_PRIORITY)
        await self._publish(channel, message.body, early_by, priority, work)

    async def _publish_dead_letter(self, body: bytes, reason: str, work: str) -> None:
        channel = self._require_channel()
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={topology.REASON_HEADER: reason},
        )
        with broker_errors("the broker did not confirm the dead letter"):
            async with asyncio.timeout(self._publish_timeout_s):
                await channel.ready()
                await channel.default_exchange.publish(message, routing_key=topology.dead_letter_queue(work))

    @asynccontextmanager
    async def consume(
        self, prefetch: int, queues: Collection[str] = (DEFAULT_QUEUE,)
    ) -> AsyncIterator[RabbitConsumer]:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1 (0 would mean unlimited to RabbitMQ)")
        connection = self._require_connection()
        consumer = RabbitConsumer(self._publish_dead_letter, self._send_round)
        channel = await self._subscribe(connection, consumer, prefetch, list(dict.fromkeys(queues)))
        self._consumers.add(consumer)
        try:
            yield consumer
        finally:
            self._consumers.discard(consumer)
            consumer.close()
            await _close_quietly(channel, self._connect_timeout_s)

    async def _subscribe(
        self, connection: AbstractRobustConnection, consumer: RabbitConsumer, prefetch: int, queues: list[str]
    ) -> AbstractRobustChannel:
        """One channel, one subscription per named queue; the prefetch is per
        subscription (quorum queues have no channel-wide prefetch)."""
        channel: AbstractRobustChannel | None = None
        try:
            with broker_errors("cannot subscribe to the queue"):
                async with asyncio.timeout(self._connect_timeout_s):
                    await connection.ready()
                    channel = connection.channel(publisher_confirms=False)
                    await channel
                    await channel.set_qos(prefetch_count=prefetch)
                    declared = {
                        queue: await channel.declare_queue(
                            self.work_queue(queue), durable=True, arguments=self._work_arguments
                        )
                        for queue in queues
                    }
                    await consumer.subscribe(connection, channel, declared)
        except BaseException:
            if channel is not None:
                await _close_quietly(channel, self._connect_timeout_s)
            raise
        return channel

    async def depth(self, queue: str = DEFAULT_QUEUE) -> int:
        """Messages ready on ``queue``'s work queue; delayed ones sit in their buckets and are not counted."""
        return await self._message_count(self.work_queue(queue))

    async def dead_letter_depth(self, queue: str = DEFAULT_QUEUE) -> int:
        return await self._message_count(topology.dead_letter_queue(self.work_queue(queue)))

    async def _message_count(self, name: str) -> int:
        connection = self._require_connection()
        with broker_errors(f"cannot read the depth of {name!r}"):
            async with asyncio.timeout(self._publish_timeout_s):
                await connection.ready()
                # A plain (not robust) channel: if the queue is missing, the
                # broker closes the channel and nobody should try to restore it.
                async with aio_pika.Channel(connection, publisher_confirms=False) as channel:
                    queue = await channel.declare_queue(name, passive=True)
                    return queue.declaration_result.message_count or 0

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise QueueUnavailable("the queue is not open")
        return self._connection

    def _require_channel(self) -> AbstractRobustChannel:
        if self._channel is None:
            raise QueueUnavailable("the queue is not open")
        return self._channel


class _DelayBuckets:
    """The delay queues in use, each re-declared before its idle expiry could
    delete it (``topology.BUCKET_IDLE_MS``): publishing does not count as use."""

    def __init__(self, queue_type: topology.QueueType, declared: set[str]) -> None:
        self._queue_type: topology.QueueType = queue_type
        self._declared = declared  # the adapter's record of every queue it declared
        self._last: dict[tuple[str, int], float] = {}  # (work queue, bucket ms) -> loop time declared

    async def declared(self, channel: AbstractRobustChannel, work: str, bucket_ms: int) -> str:
        """The name of ``work``'s bucket of ``bucket_ms``, declared if it may have expired."""
        name = topology.delay_queue(work, bucket_ms)
        now = asyncio.get_running_loop().time()
        declared_at = self._last.get((work, bucket_ms))
        if declared_at is None or now - declared_at > topology.BUCKET_IDLE_MS / 2000:
            await channel.declare_queue(
                name,
                durable=True,
                arguments=topology.delay_queue_arguments(work, bucket_ms, self._queue_type),
                robust=False,  # re-declared on use, not on every reconnect
            )
            self._last[(work, bucket_ms)] = now
            self._declared.add(name)
        return name

    def forget(self, work: str, bucket_ms: int) -> None:
        self._last.pop((work, bucket_ms), None)

    def clear(self) -> None:
        self._last.clear()


def node_urls(url: str) -> list[URL]:
    """``amqp://a:5672/,amqp://b:5672/``: one URL per node, in the order given."""
    urls = [aio_pika.connection.make_url(part.strip()) for part in url.split(",") if part.strip()]
    if not urls:
        raise ValueError("no broker URL given")
    return urls


class _NodeRotatingConnection(aio_pika.RobustConnection):
    """A robust connection that tries the next node at every connection attempt.

    aio-pika reconnects to the one URL it was given. Each of its attempts
    begins by setting ``transport`` to ``None`` while it is ``None`` already
    (after a failed attempt) or still holds the lost connection's dead
    transport (the first attempt after a connection was lost); ``close()``
    sets it from a live transport to ``None``. The first two are where the
    next node is chosen, so a node that is gone costs no attempt when it was
    the one in use, and one failed attempt (plus the reconnect interval) when
    a later attempt reaches it.
    """

    def __init__(self, urls: list[URL], **kwargs: Any) -> None:
        super().__init__(urls[0], **kwargs)
        self._nodes = urls
        self._node = -1

    @property
    def transport(self) -> Any:
        return self.__dict__.get("_transport")

    @transport.setter
    def transport(self, value: Any) -> None:
        nodes: list[URL] | None = self.__dict__.get("_nodes")
        current = self.transport
        if value is None and nodes and (current is None or current.connection.is_closed):  # an attempt begins
            self._node = (self._node + 1) % len(nodes)
            self.url = nodes[self._node]
        self.__dict__["_transport"] = value


class _Closable(Protocol):
    def close(self) -> Awaitable[None]: ...


async def _close_quietly(closable: _Closable, timeout_s: float) -> None:
    """Close on the way out without letting a dead connection hang or raise."""
    with suppress(*BROKER_ERRORS):
        async with asyncio.timeout(timeout_s):
            await closable.close()
