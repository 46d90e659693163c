"""The change-feed contract on Redis pub/sub, and what a Redis outage does to it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from taskcore.adapters.redis import RedisChangeFeed
from taskcore.errors import ChangeFeedUnavailable
from taskcore.model.changes import TaskChange
from taskcore.model.status import TaskStatus
from tests.contracts.changes import ChangeFeedContract, take
from tests.integration.redis_servers import RedisServer

pytestmark = pytest.mark.integration


async def opened(url: str, channel: str) -> RedisChangeFeed:
    feed = RedisChangeFeed(url, channel=channel, health_check_s=0.5)
    await feed.open()
    return feed


@pytest.fixture
def channel(run_id: str) -> str:
    return f"{run_id}:{uuid.uuid4().hex}:changes"


class TestRedisChangeFeed(ChangeFeedContract):
    @pytest.fixture
    async def feed(self, redis_server_url: str, channel: str) -> AsyncIterator[RedisChangeFeed]:
        feed = await opened(redis_server_url, channel)
        yield feed
        await feed.close()

    @pytest.fixture
    async def other_feed(self, redis_server_url: str, channel: str) -> AsyncIterator[RedisChangeFeed]:
        feed = await opened(redis_server_url, channel)
        yield feed
        await feed.close()


async def test_channels_do_not_mix(redis_server_url: str, channel: str) -> None:
    mine, theirs = await opened(redis_server_url, channel), await opened(redis_server_url, channel + "x")
    try:
        async with mine.subscribe() as changes:
            await theirs.announce([TaskChange(1, 1, TaskStatus.PENDING)])
            await mine.announce([TaskChange(2, 1, TaskStatus.PENDING)])
            assert await take(changes, 1) == [TaskChange(2, 1, TaskStatus.PENDING)]
    finally:
        await mine.close()
        await theirs.close()


async def test_a_redis_outage_ends_the_subscription_and_fails_announcements(own_redis: RedisServer) -> None:
    feed = await opened(own_redis.url, "changes")
    try:
        async with feed.subscribe() as changes:
            own_redis.stop()
            with pytest.raises(ChangeFeedUnavailable):
                async with asyncio.timeout(5):
                    await take(changes, 1)
        with pytest.raises(ChangeFeedUnavailable):
            await feed.announce([TaskChange(1, 1, TaskStatus.PENDING)])
        with pytest.raises(ChangeFeedUnavailable):
            async with feed.subscribe():
                pass
        own_redis.start()  # and it works again, on the same adapter
        async with feed.subscribe() as changes:
            await feed.announce([TaskChange(1, 2, TaskStatus.PROCESSING)])
            assert await take(changes, 1) == [TaskChange(1, 2, TaskStatus.PROCESSING)]
    finally:
        await feed.close()


async def test_an_unreachable_redis_fails_fast() -> None:
    feed = await opened("redis://127.0.0.1:1/0", "changes")
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ChangeFeedUnavailable):
            await feed.announce([TaskChange(1, 1, TaskStatus.PENDING)])
        assert loop.time() - started < 2
    finally:
        await feed.close()
