"""What every ``ChangeFeed`` must do, run against each adapter.

A test module subclasses ``ChangeFeedContract`` and provides ``feed`` and
``other_feed``: two opened adapters on the same channel, standing for two
processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from taskcore.model.changes import TaskChange
from taskcore.model.status import TaskStatus
from taskcore.ports import ChangeFeed

RECEIVE_S = 10.0  # a deadline for changes to arrive (they normally take milliseconds), not a pause


async def take(changes: AsyncIterator[TaskChange], count: int) -> list[TaskChange]:
    received: list[TaskChange] = []
    async with asyncio.timeout(RECEIVE_S):
        async for change in changes:
            received.append(change)
            if len(received) == count:
                break
    return received


class ChangeFeedContract:
    @pytest.fixture
    def feed(self) -> ChangeFeed:
        raise NotImplementedError

    @pytest.fixture
    def other_feed(self) -> ChangeFeed:
        raise NotImplementedError

    async def test_every_subscriber_gets_every_change_in_order(
        self, feed: ChangeFeed, other_feed: ChangeFeed
    ) -> None:
        batch = [TaskChange(1, 2, TaskStatus.PROCESSING), TaskChange(2, 1, TaskStatus.PENDING)]
        async with feed.subscribe() as mine, other_feed.subscribe() as theirs:
            await other_feed.announce(batch)
            await feed.announce([TaskChange(1, 3, TaskStatus.COMPLETED)])
            expected = [*batch, TaskChange(1, 3, TaskStatus.COMPLETED)]
            assert await take(mine, 3) == expected
            assert await take(theirs, 3) == expected

    async def test_announcing_with_nobody_listening_is_fine(self, feed: ChangeFeed) -> None:
        await feed.announce([TaskChange(9, 1, TaskStatus.PENDING)])
        await feed.announce([])

    async def test_a_subscription_gets_only_what_is_announced_after_it(self, feed: ChangeFeed) -> None:
        await feed.announce([TaskChange(5, 1, TaskStatus.PENDING)])
        async with feed.subscribe() as changes:
            await feed.announce([TaskChange(5, 2, TaskStatus.PROCESSING)])
            assert await take(changes, 1) == [TaskChange(5, 2, TaskStatus.PROCESSING)]

    async def test_a_large_batch_arrives_whole(self, feed: ChangeFeed) -> None:
        batch = [TaskChange(i, 3, TaskStatus.COMPLETED) for i in range(1, 5001)]
        async with feed.subscribe() as changes:
            await feed.announce(batch)
            assert await take(changes, len(batch)) == batch
