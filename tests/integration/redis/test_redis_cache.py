"""``RedisCache`` on a real Redis: the shared contract, then what only Redis can show."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from taskcore.adapters.redis import BreakerState, RedisCache
from taskcore.adapters.redis.cache import encode_entry
from taskcore.model.status import TaskStatus
from tests.contracts.cache import CacheContract, MakeTask, task_factory
from tests.integration.redis.conftest import OpenCache
from tests.integration.redis_servers import RedisServer

pytestmark = pytest.mark.integration


class TestRedisCacheContract(CacheContract):
    @pytest.fixture
    def cache(self, redis_cache: RedisCache) -> RedisCache:
        return redis_cache


@pytest.fixture
def make_task() -> MakeTask:
    return task_factory()


async def test_entry_lives_under_the_documented_key(
    redis_cache: RedisCache, raw_redis: Redis, key_prefix: str, make_task: MakeTask
) -> None:
    task = make_task(version=4)

    await redis_cache.put(task, None)

    assert await raw_redis.get(f"{key_prefix}task:{task.id}") == encode_entry(task)


@pytest.mark.parametrize("ttl", [timedelta(seconds=60), timedelta(milliseconds=1500.9)])
async def test_redis_expires_the_entry_within_the_ttl(
    redis_cache: RedisCache, raw_redis: Redis, make_task: MakeTask, ttl: timedelta
) -> None:
    task = make_task()

    await redis_cache.put(task, ttl)

    pttl = await raw_redis.pttl(redis_cache.key(task.id))
    assert 0 < pttl <= ttl / timedelta(milliseconds=1)
    assert pttl > ttl / timedelta(milliseconds=1) - 1000


async def test_no_ttl_means_no_expiry_in_redis(
    redis_cache: RedisCache, raw_redis: Redis, make_task: MakeTask
) -> None:
    task = make_task()
    await redis_cache.put(task, timedelta(seconds=30))

    await redis_cache.put(make_task(task.id, version=2), None)

    assert await raw_redis.pttl(redis_cache.key(task.id)) == -1


async def test_a_racing_read_through_never_leaves_pending_after_completed(
    redis_cache: RedisCache, make_task: MakeTask
) -> None:
    """A read-through holding the PENDING row (version 1) races the worker's
    COMPLETED write (version 3); whatever the order, COMPLETED stays."""
    for _ in range(10):
        pending = make_task(version=1)
        completed = make_task(pending.id, version=3, status=TaskStatus.COMPLETED, result="x")
        writes = [pending] * 30 + [completed] * 30
        random.shuffle(writes)

        await asyncio.gather(*(redis_cache.put(task, timedelta(seconds=60)) for task in writes))

        assert await redis_cache.get(pending.id) == completed


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage",
        b"",
        b"3:{not json",
        b'{"id": 1}',
        b"2:" + b'{"id": 1, "version": 3}',
        b"x:" + b"{}",
    ],
    ids=["garbage", "empty", "bad-json", "no-version", "invalid-task", "bad-version"],
)
async def test_corrupt_entry_is_a_miss_and_is_dropped(
    redis_cache: RedisCache, raw_redis: Redis, make_task: MakeTask, raw: bytes
) -> None:
    task = make_task()
    await raw_redis.set(redis_cache.key(task.id), raw)

    assert await redis_cache.get(task.id) is None

    assert await raw_redis.exists(redis_cache.key(task.id)) == 0
    assert redis_cache.breaker.state is BreakerState.CLOSED


async def test_entry_of_another_task_or_version_is_a_miss(
    redis_cache: RedisCache, raw_redis: Redis, make_task: MakeTask
) -> None:
    task = make_task(version=2)
    other = make_task(version=2)
    await raw_redis.set(redis_cache.key(task.id), encode_entry(other))
    mislabelled = make_task(version=2)
    await raw_redis.set(redis_cache.key(mislabelled.id), b"5:" + encode_entry(mislabelled).split(b":", 1)[1])

    assert await redis_cache.get(task.id) is None
    assert await redis_cache.get(mislabelled.id) is None


async def test_key_of_another_type_is_a_miss_and_is_replaced(
    redis_cache: RedisCache, raw_redis: Redis, make_task: MakeTask
) -> None:
    task = make_task()
    await raw_redis.hset(redis_cache.key(task.id), mapping={"v": "9"})
    assert await redis_cache.get(task.id) is None

    await raw_redis.hset(redis_cache.key(task.id), mapping={"v": "9"})
    await redis_cache.put(task, None)

    assert await redis_cache.get(task.id) == task


async def test_put_replaces_a_corrupt_entry(
    redis_cache: RedisCache, raw_redis: Redis, make_task: MakeTask
) -> None:
    task = make_task(version=1)
    await raw_redis.set(redis_cache.key(task.id), b"99 bottles")

    await redis_cache.put(task, None)

    assert await redis_cache.get(task.id) == task


async def test_ping_answers_when_redis_does(redis_cache: RedisCache) -> None:
    await redis_cache.ping()


async def test_put_reloads_the_script_after_redis_forgot_it(
    own_redis: RedisServer, open_cache: OpenCache, make_task: MakeTask
) -> None:
    cache = await open_cache(own_redis.url)
    first = make_task(version=1)
    await cache.put(first, None)
    raw = Redis.from_url(own_redis.url)
    try:
        await raw.script_flush()
    finally:
        await raw.aclose()

    second = make_task(first.id, version=2)
    await cache.put(second, None)
    await cache.put(first, None)

    assert await cache.get(first.id) == second
