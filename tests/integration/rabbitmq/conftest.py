"""RabbitMQ fixtures: a fresh queue name per test, and every declared queue deleted after it.

The broker is shared with other runs, so names start with the run id, and the
tests only ever close their own connections.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection

from taskcore.adapters.rabbitmq import RabbitQueue
from taskcore.adapters.rabbitmq.topology import REASON_HEADER
from tests.contracts.queue import DeadLetters
from tests.integration.rabbitmq_cluster import rabbit_cluster  # noqa: F401  (test_cluster.py)

MakeQueue = Callable[..., Awaitable[RabbitQueue]]


@pytest.fixture
async def broker(amqp_server_url: str) -> AsyncIterator[AbstractConnection]:
    """A plain connection of the test's own, to inspect and clean up behind the adapter."""
    connection = await aio_pika.connect(amqp_server_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def queue_name(run_id: str) -> str:
    return f"{run_id}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def make_queue(
    amqp_server_url: str, queue_name: str, broker: AbstractConnection
) -> AsyncIterator[MakeQueue]:
    """Opened adapters on this test's queue; closed, and all they declared deleted, afterwards."""
    made: list[RabbitQueue] = []

    async def make(url: str | None = None, *, open: bool = True, **kwargs: Any) -> RabbitQueue:
        kwargs.setdefault("queue_name", queue_name)
        kwargs.setdefault("connection_name", f"{queue_name}.{len(made)}")
        queue = RabbitQueue(url or amqp_server_url, **kwargs)
        made.append(queue)
        if open:
            await queue.open()
        return queue

    try:
        yield make
    finally:
        declared = {queue_name, f"{queue_name}.dlq"}
        for queue in made:
            declared |= queue.declared_queues
            await queue.close()
        async with broker.channel() as channel:
            for name in sorted(declared):
                await channel.queue_delete(name)


@pytest.fixture
async def queue(make_queue: MakeQueue) -> RabbitQueue:
    return await make_queue()


@pytest.fixture
def dead_letters(queue: RabbitQueue, broker: AbstractConnection) -> DeadLetters:
    """Drains ``<queue>.dlq``; keeps what it drained so every call returns all so far."""
    seen: list[tuple[bytes, str]] = []

    async def drain() -> list[tuple[bytes, str]]:
        async with broker.channel() as channel:
            dlq = await channel.declare_queue(queue.dead_letter_queue_name, passive=True)
            while (message := await dlq.get(no_ack=True, fail=False)) is not None:
                reason = message.headers.get(REASON_HEADER)
                seen.append((message.body, reason.decode() if isinstance(reason, bytes) else str(reason)))
        return list(seen)

    return drain
