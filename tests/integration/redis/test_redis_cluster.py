"""``RedisCache`` on a three-node Redis Cluster, reached through one seed node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from taskcore.adapters.redis import RedisCache
from tests.contracts.cache import CacheContract, MakeTask, task_factory
from tests.integration.redis.conftest import OpenCache, delete_prefix
from tests.integration.redis_servers import RedisClusterNodes

pytestmark = pytest.mark.integration

# The first call discovers the slot map: give it room on a busy machine.
CLUSTER_TIMEOUT_S = 2.0


@pytest.fixture
async def node_clients(redis_cluster: RedisClusterNodes, key_prefix: str) -> AsyncIterator[list[Redis]]:
    """A plain client per node; deletes this test's keys on every node afterwards."""
    clients = [Redis(port=port) for port in redis_cluster.ports]
    yield clients
    for client in clients:
        await delete_prefix(client, key_prefix)
        await client.aclose()


@pytest.fixture
async def cluster_cache(
    open_cache: OpenCache, redis_cluster: RedisClusterNodes, key_prefix: str, node_clients: list[Redis]
) -> RedisCache:
    return await open_cache(
        redis_cluster.seed_url, cluster=True, prefix=key_prefix, timeout_s=CLUSTER_TIMEOUT_S
    )


class TestRedisClusterCacheContract(CacheContract):
    @pytest.fixture
    def cache(self, cluster_cache: RedisCache) -> RedisCache:
        return cluster_cache


async def test_entries_spread_over_the_nodes(
    cluster_cache: RedisCache, node_clients: list[Redis], key_prefix: str
) -> None:
    make_task = task_factory()
    tasks = [make_task() for _ in range(30)]

    await asyncio.gather(*(cluster_cache.put(task, None) for task in tasks))

    per_node = [
        len([key async for key in client.scan_iter(match=f"{key_prefix}*")]) for client in node_clients
    ]
    assert sum(per_node) == len(tasks)
    assert sum(1 for count in per_node if count) >= 2, per_node
    assert [await cluster_cache.get(task.id) for task in tasks] == tasks


async def test_ping_reaches_the_cluster(cluster_cache: RedisCache) -> None:
    await cluster_cache.ping()


async def test_older_version_loses_on_the_node_that_owns_the_key(cluster_cache: RedisCache) -> None:
    make: MakeTask = task_factory()
    newer = make(version=3)
    await cluster_cache.put(newer, None)

    await cluster_cache.put(make(newer.id, version=2), None)

    assert await cluster_cache.get(newer.id) == newer
