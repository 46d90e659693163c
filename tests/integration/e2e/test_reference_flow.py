"""The reference design, for real: PostgreSQL row, RabbitMQ message, Redis entry."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import psycopg
import pytest
import redis
from redis.cluster import RedisCluster

from taskcore import TaskStatus
from taskcore.adapters.redis import RedisCache
from tests.integration.redis_servers import RedisClusterNodes

from .conftest import TASKCORE, Stack

pytestmark = pytest.mark.integration


def test_submit_to_completed_through_every_service(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker()
    created = stack.submit("hello")
    assert (created["status"], created["result"]) == ("PENDING", None)
    done = stack.wait_final(created["id"])
    assert (done["status"], done["result"], done["attempts"]) == ("COMPLETED", "olleh", 1)

    [(status, result, version)] = stack.sql(
        "SELECT status::text, result, version FROM tasks WHERE id = %s", created["id"]
    )
    assert (status, result, version) == ("COMPLETED", "olleh", 3)

    client = redis.Redis.from_url(stack.redis_url)
    ttl_ms = client.pttl(f"{stack.cache_prefix}task:{created['id']}")
    client.close()
    assert 0 < ttl_ms <= 60_000


def test_verify_command_passes_against_the_stack(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker()
    result = subprocess.run(
        [TASKCORE, "verify", stack.base_url, "--timeout", "30"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"ok: task \d+ submitted in [\d.]+ ms, COMPLETED with the right result", result.stdout)


def test_verify_fails_when_no_worker_runs(stack: Stack) -> None:
    stack.start_api()
    result = subprocess.run(
        [TASKCORE, "verify", stack.base_url, "--timeout", "1"], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "still PENDING" in result.stderr


def test_a_finished_task_is_read_from_the_cache(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker()
    task_id = stack.submit("cached")["id"]
    stack.wait_final(task_id)
    # Hide the table: a GET that touched the database would now fail.
    stack.sql("ALTER TABLE tasks RENAME TO tasks_hidden")
    try:
        assert stack.get(task_id)["result"] == "dehcac"
    finally:
        stack.sql("ALTER TABLE tasks_hidden RENAME TO tasks")


async def test_an_older_state_never_replaces_a_newer_one_in_the_cache(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker()
    task_id = stack.submit("race")["id"]
    stack.wait_final(task_id)
    cache = RedisCache(stack.redis_url, prefix=stack.cache_prefix)
    await cache.open()
    try:
        completed = await cache.get(task_id)
        assert completed is not None
        assert completed.status is TaskStatus.COMPLETED
        # A read-through that read PENDING before the worker finished writes late:
        stale = msgspec.structs.replace(completed, version=1, status=TaskStatus.PENDING, result=None)
        await cache.put(stale, timedelta(seconds=60))
        assert (await cache.get(task_id)).status is TaskStatus.COMPLETED  # type: ignore[union-attr]
    finally:
        await cache.close()
    assert stack.get(task_id)["status"] == "COMPLETED"


def test_the_api_serves_while_redis_is_unreachable(stack: Stack) -> None:
    dead_redis = "redis://127.0.0.1:1/0"
    stack.start_api(TASKCORE_REDIS_URL=dead_redis)
    stack.start_worker(TASKCORE_REDIS_URL=dead_redis)
    started = time.monotonic()
    task_id = stack.submit("no cache")["id"]
    assert stack.wait_final(task_id)["result"] == "ehcac on"
    assert time.monotonic() - started < 20
    ready = httpx.get(f"{stack.base_url}/health/ready").json()
    assert ready["status"] == "ready"
    assert ready["checks"]["redis"].startswith("unavailable")
    assert ready["checks"]["postgres"] == "ok"


async def test_reads_use_the_read_replica(stack: Stack, databases) -> None:  # type: ignore[no-untyped-def]
    replica = await databases.create()
    now = datetime.now(UTC)
    with psycopg.connect(replica.url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO tasks (id, type, input, status, result, attempts, max_attempts, version,"
            " created_at, updated_at, run_at, finished_at) OVERRIDING SYSTEM VALUE VALUES"
            " (4242, 'reverse', '\"abc\"', 'COMPLETED', '\"from the replica\"', 1, 3, 3, %s, %s, %s, %s)",
            (now, now, now, now),
        )
    stack.start_api(TASKCORE_DATABASE_READ_URL=replica.url)
    assert stack.get(4242)["result"] == "from the replica"  # not in the primary at all
    assert stack.sql("SELECT count(*) FROM tasks WHERE id = 4242") == [(0,)]


def test_two_workers_share_the_queue(stack: Stack) -> None:
    stack.start_api()
    workers = [stack.start_worker(TASKCORE_WORKER_CONCURRENCY="2") for _ in range(2)]
    ids = [stack.submit(f"task {i}")["id"] for i in range(24)]
    for task_id in ids:
        assert stack.wait_final(task_id)["status"] == "COMPLETED"
    completed = []
    for worker in workers:
        assert worker.stop(signal.SIGTERM) == 0
        match = re.search(r"worker stopped: .*'completed': (\d+)", worker.output())
        completed.append(int(match.group(1)) if match else 0)
    assert sum(completed) == 24
    assert min(completed) > 0, completed


def test_redis_cluster_as_the_cache(stack: Stack, redis_cluster: RedisClusterNodes) -> None:
    cluster = {"TASKCORE_REDIS_URL": redis_cluster.seed_url, "TASKCORE_REDIS_CLUSTER": "1"}
    stack.start_api(**cluster)
    stack.start_worker(**cluster)
    ids = [stack.submit(f"cluster {i}")["id"] for i in range(6)]
    for task_id in ids:
        assert stack.wait_final(task_id)["status"] == "COMPLETED"
    client = RedisCluster.from_url(redis_cluster.seed_url)
    try:
        for task_id in ids:
            ttl_ms = client.pttl(f"{stack.cache_prefix}task:{task_id}")
            assert 0 < ttl_ms <= 60_000
    finally:
        client.close()
    ready = httpx.get(f"{stack.base_url}/health/ready").json()
    assert ready["checks"]["redis"] == "ok"


def test_input_postgres_cannot_hold_is_a_422_and_stores_nothing(stack: Stack) -> None:
    stack.start_api()
    response = httpx.post(
        f"{stack.base_url}/tasks/",
        content=b'{"input_data": "nul \\u0000 inside"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert stack.sql("SELECT count(*) FROM tasks") == [(0,)]
