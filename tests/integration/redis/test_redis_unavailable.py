"""Redis is optional: a dead or silent server costs a short timeout, then
nothing at all while the breaker is open, and never a redis exception."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta

import pytest

from taskcore.adapters.redis import BreakerState, RedisCache
from taskcore.errors import CacheUnavailable, ConfigurationError
from tests.contracts.cache import MakeTask, task_factory
from tests.integration.polling import until
from tests.integration.redis.conftest import OpenCache
from tests.integration.redis_servers import RedisServer

pytestmark = pytest.mark.integration

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
TIMEOUT_S = 0.25


@pytest.fixture
def make_task() -> MakeTask:
    return task_factory()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections and never answers: every call has to
    wait out the timeout, unlike a refused connection that fails at once."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


async def timed_failure(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    with pytest.raises(CacheUnavailable):
        await call()
    return time.perf_counter() - started


async def test_unreachable_redis_opens_and_fails_every_call_as_unavailable(
    open_cache: OpenCache, make_task: MakeTask
) -> None:
    cache = await open_cache(CLOSED_PORT_URL, timeout_s=TIMEOUT_S, breaker_failures=100)
    task = make_task()

    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: cache.get(task.id),
        lambda: cache.put(task, timedelta(seconds=60)),
        cache.ping,
    ]
    for call in calls:
        with pytest.raises(CacheUnavailable) as caught:
            await call()
        assert caught.value.__cause__ is not None


async def test_silent_redis_times_out_then_the_breaker_fails_fast(
    open_cache: OpenCache, make_task: MakeTask, silent_url: str
) -> None:
    cache = await open_cache(silent_url, timeout_s=TIMEOUT_S, breaker_failures=3, breaker_reset_s=30.0)
    task = make_task()

    slow = [
        await timed_failure(lambda: cache.get(task.id)),
        await timed_failure(lambda: cache.put(task, None)),
        await timed_failure(lambda: cache.get(task.id)),
    ]
    assert cache.breaker.state is BreakerState.OPEN
    fast = [await timed_failure(lambda: cache.get(task.id)) for _ in range(20)]

    assert all(TIMEOUT_S * 0.8 <= elapsed < TIMEOUT_S + 0.75 for elapsed in slow), slow
    assert statistics.median(fast) < 0.005, fast
    assert statistics.median(slow) > 20 * statistics.median(fast)


async def test_breaker_lets_a_trial_through_and_closes_once_redis_is_back(
    own_redis: RedisServer, open_cache: OpenCache, make_task: MakeTask
) -> None:
    cache = await open_cache(own_redis.url, timeout_s=TIMEOUT_S, breaker_failures=2, breaker_reset_s=0.3)
    task = make_task()
    await cache.put(task, None)

    own_redis.stop()
    for _ in range(2):
        await timed_failure(lambda: cache.get(task.id))
    own_redis.start()
    assert await timed_failure(lambda: cache.get(task.id)) < 0.005  # still open: no network
    assert 0 < cache.breaker.retry_in_s <= 0.3  # a trial is due within its 0.3 s reset

    await until(lambda: cache.breaker.retry_in_s == 0, "the breaker to let a trial through", timeout_s=5)

    assert await cache.get(task.id) is None  # the trial reached the restarted (empty) server
    assert cache.breaker.state is BreakerState.CLOSED
    await cache.put(task, None)
    assert await cache.get(task.id) == task


async def test_ping_reports_redis_even_while_the_breaker_is_open(
    own_redis: RedisServer, open_cache: OpenCache, make_task: MakeTask
) -> None:
    cache = await open_cache(own_redis.url, timeout_s=TIMEOUT_S, breaker_failures=1, breaker_reset_s=60.0)
    own_redis.stop()
    await timed_failure(lambda: cache.get(1))
    own_redis.start()

    await cache.ping()

    assert cache.breaker.state is BreakerState.CLOSED
    assert await cache.get(1) is None


async def test_calls_before_open_are_unavailable(make_task: MakeTask) -> None:
    cache = RedisCache(CLOSED_PORT_URL)

    with pytest.raises(CacheUnavailable):
        await cache.get(1)
    with pytest.raises(CacheUnavailable):
        await cache.put(make_task(), None)


async def test_close_is_idempotent_and_tolerates_a_dead_server(open_cache: OpenCache) -> None:
    cache = await open_cache(CLOSED_PORT_URL)
    with pytest.raises(CacheUnavailable):
        await cache.get(1)

    await cache.close()
    await cache.close()


@pytest.mark.parametrize("cluster", [False, True])
async def test_a_malformed_url_is_a_configuration_error(cluster: bool) -> None:
    cache = RedisCache("http://127.0.0.1:6379", cluster=cluster)

    with pytest.raises(ConfigurationError):
        await cache.open()
