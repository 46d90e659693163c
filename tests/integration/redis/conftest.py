"""Redis fixtures: a per-test key prefix on the shared server, and private
``redis-server`` processes for what must not touch it.

The shared server is never flushed: each test writes under
``f"{run_id}:{uuid}:"`` and deletes exactly those keys afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from taskcore.adapters.redis import RedisCache
from tests.integration.redis_servers import RedisServer, require_binaries

OpenCache = Callable[..., Awaitable[RedisCache]]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A standalone server this test alone may stop, restart or flush."""
    require_binaries()
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def key_prefix(run_id: str) -> str:
    return f"{run_id}:{uuid.uuid4().hex}:"


async def delete_prefix(client: Redis, prefix: str) -> int:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
    for key in keys:
        await client.delete(key)  # one key per call: Cluster nodes refuse cross-slot DELs
    return len(keys)


@pytest.fixture
async def raw_redis(redis_server_url: str, key_prefix: str) -> AsyncIterator[Redis]:
    """A plain client on the shared server, for looking behind the adapter;
    deletes every key under this test's prefix afterwards."""
    client = Redis.from_url(redis_server_url)
    try:
        yield client
    finally:
        await delete_prefix(client, key_prefix)
        await client.aclose()


@pytest.fixture
async def open_cache() -> AsyncIterator[OpenCache]:
    """Open ``RedisCache``s for a test and close them all at its end."""
    opened: list[RedisCache] = []

    async def open_(url: str, **options: Any) -> RedisCache:
        cache = RedisCache(url, **options)
        await cache.open()
        opened.append(cache)
        return cache

    yield open_
    for cache in opened:
        await cache.close()


@pytest.fixture
async def redis_cache(
    open_cache: OpenCache, redis_server_url: str, key_prefix: str, raw_redis: Redis
) -> RedisCache:
    return await open_cache(redis_server_url, prefix=key_prefix)
