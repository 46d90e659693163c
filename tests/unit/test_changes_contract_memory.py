"""The change-feed contract on ``MemoryChangeFeed``, and how it fails."""

from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryChangeFeed
from taskcore.errors import ChangeFeedUnavailable
from taskcore.model.changes import TaskChange
from taskcore.model.status import TaskStatus
from tests.contracts.changes import ChangeFeedContract, take


class TestMemoryChangeFeed(ChangeFeedContract):
    @pytest.fixture
    def feed(self) -> MemoryChangeFeed:
        return MemoryChangeFeed()

    @pytest.fixture
    def other_feed(self, feed: MemoryChangeFeed) -> MemoryChangeFeed:
        return feed  # in one process both "processes" share the feed


async def test_a_switched_off_feed_fails_both_ways_and_ends_subscriptions() -> None:
    feed = MemoryChangeFeed()
    async with feed.subscribe() as changes:
        feed.available = False
        with pytest.raises(ChangeFeedUnavailable):
            await take(changes, 1)
    with pytest.raises(ChangeFeedUnavailable):
        await feed.announce([TaskChange(1, 1, TaskStatus.PENDING)])
    with pytest.raises(ChangeFeedUnavailable):
        async with feed.subscribe():
            pass
    assert feed.subscribers == 0
