"""Delays longer than the longest delay bucket: the message waits in it and is sent round again."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from taskcore.adapters.rabbitmq import topology
from tests.contracts.queue import ARRIVES_S, QUIET_S, take, within
from tests.integration.polling import until

from .conftest import MakeQueue

pytestmark = pytest.mark.integration


async def test_a_delay_beyond_the_longest_bucket_arrives_on_time_with_its_priority(
    make_queue: MakeQueue,
) -> None:
    queue = await make_queue(longest_delay_ms=300)  # as if 48.6 days were 0.3 s
    loop = asyncio.get_running_loop()
    start = loop.time()
    await queue.publish(b"long", delay=timedelta(seconds=1.1), priority=9)
    async with queue.consume(prefetch=1) as consumer:
        # It comes back from the bucket at 0.3 s and 0.6 s and is sent round again each time.
        early = await within(consumer, 0.75)
        assert early is None, "handed out before its due time"
        await queue.publish(b"backlog-1")
        await queue.publish(b"backlog-2")
        first = await take(consumer)
        assert first.body == b"backlog-1"

        # Hold the backlog until the long message is due and back on the work queue,
        # ready beside backlog-2 (on a busy machine its rounds through the bucket run late).
        async def due_and_back() -> bool:
            return loop.time() - start >= 1.1 + QUIET_S and await queue.depth() == 2

        await until(due_and_back, "the long message, due, back on the work queue", timeout_s=1.1 + ARRIVES_S)
        await first.ack()
        second = await take(consumer)
        assert second.body == b"long", "the long delay lost its priority on the way round"
        assert 1.1 <= loop.time() - start < 1.1 + ARRIVES_S
        await second.ack()
        last = await take(consumer)
        assert last.body == b"backlog-2"
        await last.ack()


def test_delays_up_to_the_longest_bucket_fit_one_bucket() -> None:
    assert (
        topology.delay_bucket_ms(timedelta(milliseconds=topology.LONGEST_BUCKET_MS))
        == topology.LONGEST_BUCKET_MS
    )
    assert topology.LONGEST_BUCKET_MS <= topology.MAX_DELAY_MS


async def test_a_delay_of_a_year_is_accepted(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    await queue.publish(b"next year", delay=timedelta(days=366), priority=3)
    assert await queue.depth() == 0  # waiting in the longest bucket
