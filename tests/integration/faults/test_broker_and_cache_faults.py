"""A backing service goes away under running ``api`` and ``worker`` processes.

Each test routes one process's link to RabbitMQ, Redis or PostgreSQL through a
``TcpProxy`` and cuts it, so only this test's traffic breaks (the services are
shared). What must hold: a task that got 201 reaches its final state with the
right result, clients get answers (201/200, or 503 when the database is gone),
never a 500, and everything resumes by itself once the link is back.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis

from tests.integration.e2e.conftest import Process, Stack

from .handlers import runs
from .proxies import Proxies

pytestmark = [pytest.mark.integration]

T = TypeVar("T")

FINAL = ("COMPLETED", "FAILED", "CANCELLED")
SUBMIT_BOUND_S = 3.0  # generous: a submit must not wait out broker timeouts
RECOVERY_S = 30.0
# aio-pika's robust connection logs this for each reconnect the (cut) proxy refuses.
RECONNECT_REFUSED = "Connection refused. Reconnecting after"


@pytest.fixture
def proxies() -> Iterator[Proxies]:
    with Proxies() as made:
        yield made


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(interval)


def wait_log(process: Process, text: str, timeout: float = 30) -> None:
    def seen() -> bool:
        assert process.popen.poll() is None, f"{process.name} exited:\n{process.output()}"
        return text in process.output()

    wait_for(seen, timeout, f"{text!r} in the {process.name} log")


def unpublished(output: str) -> set[int]:
    """The ids a process logged as stored but not published (alone, or several
    that were to share a message: ``task(s) 4 5 6 stored but not published``)."""
    found = re.findall(r"task(?:\(s\))? ([\d ]+) stored but not published", output)
    return {int(task_id) for ids in found for task_id in ids.split()}


def start_worker(stack: Stack, **env: str) -> Process:
    worker = stack.start_worker(**env)
    wait_log(worker, "worker consuming")
    return worker


def readiness(stack: Stack) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{stack.base_url}/health/ready", timeout=10)
    return response.status_code, response.json()


def timed_post(
    client: httpx.Client, stack: Stack, input_data: Any, **extra: Any
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.post(f"{stack.base_url}/tasks/", json={"input_data": input_data, **extra})
    return response, time.monotonic() - started


def assert_completed(task: dict[str, Any], result: Any) -> None:
    assert (task["status"], task["result"], task["error"]) == ("COMPLETED", result, None), task
    assert task["attempts"] >= 1
    assert task["finished_at"] is not None


# -- RabbitMQ ----------------------------------------------------------------------


def test_submits_while_the_broker_is_unreachable_complete_once_it_is_back(
    fault_stack: Stack, proxies: Proxies
) -> None:
    stack = fault_stack
    broker = proxies(stack.env["TASKCORE_AMQP_URL"])
    stack.start_api(TASKCORE_AMQP_URL=broker.url)
    worker = start_worker(stack, TASKCORE_AMQP_URL=broker.url)
    warm_up = stack.submit("warm up")["id"]
    assert_completed(stack.wait_final(warm_up), "pu mraw")

    broker.cut()
    inputs = [f"outage {i}" for i in range(30)]
    ids: list[int] = []
    latencies: list[float] = []
    with httpx.Client(timeout=15) as client:
        for text in inputs:
            response, took = timed_post(client, stack, text)
            assert response.status_code == 201, response.text
            created = response.json()
            assert (created["status"], created["result"]) == ("PENDING", None)
            ids.append(created["id"])
            latencies.append(took)
    assert max(latencies) < SUBMIT_BOUND_S, latencies
    # Every one is stored, and none was confirmed by the broker: the outage was real.
    [(stored, unconfirmed)] = stack.sql(
        "SELECT count(*), count(*) FILTER (WHERE dispatched_at IS NULL) FROM tasks WHERE id = ANY(%s)", ids
    )
    assert (stored, unconfirmed) == (30, 30)
    status, ready = readiness(stack)
    assert status == 503
    assert ready["checks"]["rabbitmq"].startswith("unavailable"), ready

    # Past the re-dispatch grace the worker's sweeper tries to publish every one, and fails.
    wait_for(
        lambda: set(ids) <= unpublished(worker.output()),
        RECOVERY_S,
        "the worker's sweeper to try (and fail) to publish every task",
    )
    assert {stack.get(task_id)["status"] for task_id in ids} == {"PENDING"}
    broker.restore()
    restored = time.monotonic()
    for task_id, text in zip(ids, inputs, strict=True):
        assert_completed(stack.wait_final(task_id, timeout=RECOVERY_S), text[::-1])
    recovered_s = time.monotonic() - restored
    assert wait_for(lambda: readiness(stack)[0] == 200, 20, "the API to be ready again")
    assert worker.popen.poll() is None
    print(
        f"\nbroker outage: 30 submits, latency max {max(latencies) * 1000:.0f} ms,"
        f" mean {sum(latencies) / len(latencies) * 1000:.0f} ms;"
        f" all 30 COMPLETED {recovered_s:.1f} s after the broker came back"
    )


def test_an_idle_worker_resubscribes_after_its_broker_connection_is_cut(
    fault_stack: Stack, proxies: Proxies
) -> None:
    stack = fault_stack
    broker = proxies(stack.env["TASKCORE_AMQP_URL"])
    stack.start_api()  # straight to the broker: its messages are confirmed, the sweeper will not help
    worker = start_worker(stack, TASKCORE_AMQP_URL=broker.url)
    first = stack.submit("before")["id"]
    assert_completed(stack.wait_final(first), "erofeb")

    pickups: list[float] = []
    for cycle in range(2):
        refused = worker.output().count(RECONNECT_REFUSED)
        broker.cut()
        during = stack.submit(f"during {cycle}")["id"]
        # Until the worker has lost its connection and been refused at least once on its way back.
        wait_for(
            lambda refused=refused: worker.output().count(RECONNECT_REFUSED) > refused,
            RECOVERY_S,
            "the worker to try to reconnect",
        )
        assert stack.get(during)["status"] == "PENDING"
        # Its message was confirmed (the API reaches the broker), so the sweeper
        # will not publish it again: only the re-subscribed consumer can run it.
        assert stack.sql("SELECT dispatched_at IS NOT NULL FROM tasks WHERE id = %s", during) == [(True,)]
        accepted = broker.accepted
        broker.restore()
        after = stack.submit(f"after {cycle}")["id"]
        submitted = time.monotonic()
        assert_completed(stack.wait_final(after, timeout=20), f"after {cycle}"[::-1])
        pickups.append(time.monotonic() - submitted)
        assert_completed(stack.wait_final(during, timeout=5), f"during {cycle}"[::-1])
        assert broker.accepted > accepted  # the worker did reconnect through the proxy
    assert worker.popen.poll() is None
    print(
        "\nidle worker cut twice, until a reconnect was refused:"
        f" a task submitted after each restore completed in {pickups} s"
    )


def test_a_silent_broker_delays_a_submit_by_the_publish_timeout_at_most(
    fault_stack: Stack, proxies: Proxies
) -> None:
    """A partition, not a refusal: the API's connection looks alive, so each publish
    waits for its confirm until ``TASKCORE_AMQP_TIMEOUT_S``; the submit still answers
    201, and the worker's sweeper publishes the unconfirmed tasks meanwhile."""
    stack = fault_stack
    broker = proxies(stack.env["TASKCORE_AMQP_URL"])
    stack.start_api(TASKCORE_AMQP_URL=broker.url, TASKCORE_AMQP_TIMEOUT_S="2")
    start_worker(stack)  # straight to the broker
    warm_up = stack.submit("warm up")["id"]
    assert_completed(stack.wait_final(warm_up), "pu mraw")

    broker.pause()
    inputs = [f"partition {i}" for i in range(3)]
    ids: list[int] = []
    latencies: list[float] = []
    with httpx.Client(timeout=15) as client:
        for text in inputs:
            response, took = timed_post(client, stack, text)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
            latencies.append(took)
    assert max(latencies) < 2 + SUBMIT_BOUND_S, latencies
    # Not confirmed by the API's broker, so the worker's sweeper sends them: they
    # complete while the API is still cut off.
    for task_id, text in zip(ids, inputs, strict=True):
        assert_completed(stack.wait_final(task_id, timeout=RECOVERY_S), text[::-1])
    broker.restore()  # the held publishes arrive now: duplicates, dropped at the claim
    after = stack.submit("healed")["id"]
    assert_completed(stack.wait_final(after), "delaeh")
    for task_id, text in zip(ids, inputs, strict=True):
        assert_completed(stack.get(task_id), text[::-1])
        assert stack.get(task_id)["attempts"] == 1
    print(
        f"\nsilent broker, 2 s publish timeout: submits answered 201 in {[round(t, 2) for t in latencies]} s"
    )


# -- Redis ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["cut", "pause"])  # refused at once / no answer (timeouts)
def test_redis_outage_mid_run_gives_clients_no_error_and_every_task_completes(
    fault_stack: Stack, fault_dir: Path, proxies: Proxies, fault: str
) -> None:
    stack = fault_stack
    cache = proxies(stack.redis_url)
    stack.start_api(TASKCORE_REDIS_URL=cache.url)
    start_worker(stack, TASKCORE_REDIS_URL=cache.url)
    expected: dict[int, str] = {}
    for i in range(4):
        task_id = stack.submit({"key": f"nap{i}", "seconds": 3}, type="sleep_async")["id"]
        expected[task_id] = f"slept nap{i}"
    naps = set(expected)
    # A handler that started was claimed, and its PROCESSING state cached, first.
    wait_for(lambda: all(runs(fault_dir, f"nap{i}") for i in range(4)), 20, "the naps to be running")

    getattr(cache, fault)()
    cut_at = time.monotonic()
    latencies: list[float] = []
    statuses: list[int] = []
    seen_final: dict[int, dict[str, Any]] = {}
    with httpx.Client(timeout=15) as client:
        for i in range(10):
            response, took = timed_post(client, stack, f"no cache {i}")
            statuses.append(response.status_code)
            latencies.append(took)
            assert response.status_code == 201, response.text
            expected[response.json()["id"]] = f"no cache {i}"[::-1]
        # Keep reading through the outage until every task is final (read from the database).
        while len(seen_final) < len(expected) or time.monotonic() - cut_at < 4:
            assert time.monotonic() - cut_at < RECOVERY_S, f"not final: {set(expected) - set(seen_final)}"
            for task_id in expected:
                started = time.monotonic()
                response = client.get(f"{stack.base_url}/tasks/{task_id}")
                latencies.append(time.monotonic() - started)
                statuses.append(response.status_code)
                assert response.status_code == 200, response.text
                if response.json()["status"] in FINAL:
                    seen_final[task_id] = response.json()
            time.sleep(0.1)
        status, ready = readiness(stack)
    for task_id, result in expected.items():
        assert_completed(seen_final[task_id], result)
    assert status == 200, ready  # Redis is optional: still ready
    assert ready["checks"]["redis"].startswith("unavailable"), ready
    assert ready["checks"]["postgres"] == ready["checks"]["rabbitmq"] == "ok", ready
    outage_s = time.monotonic() - cut_at

    cache.restore()
    with httpx.Client(timeout=15) as client:
        for task_id, result in expected.items():
            response = client.get(f"{stack.base_url}/tasks/{task_id}")
            assert response.status_code == 200, response.text
            if task_id in naps:
                # Cached as PROCESSING before the cut: may read stale, see the next test.
                assert response.json()["status"] in ("PROCESSING", "COMPLETED")
            else:  # never cached: read from the database, then cached
                assert_completed(response.json(), result)
        late = client.post(f"{stack.base_url}/tasks/", json={"input_data": "cache is back"})
        assert late.status_code == 201, late.text
    assert_completed(stack.wait_final(late.json()["id"]), "kcab si ehcac")
    print(
        f"\nredis outage ({fault}) of {outage_s:.1f} s: {len(statuses)} requests, all 2xx;"
        f" latency max {max(latencies) * 1000:.0f} ms, mean {sum(latencies) / len(latencies) * 1000:.0f} ms"
    )


def test_reads_never_go_back_once_redis_is_back(
    fault_stack: Stack, fault_dir: Path, proxies: Proxies
) -> None:
    stack = fault_stack
    cache = proxies(stack.redis_url)
    stack.start_api(TASKCORE_REDIS_URL=cache.url)
    worker = start_worker(stack, TASKCORE_REDIS_URL=cache.url)
    task_id = stack.submit({"key": "nap", "seconds": 4}, type="sleep_async")["id"]
    wait_for(lambda: runs(fault_dir, "nap"), 20, "the nap to be running")  # claimed: PROCESSING is cached

    cache.cut()
    assert_completed(stack.wait_final(task_id, timeout=RECOVERY_S), "slept nap")  # from the database
    cache.restore()
    # Keep reading until the worker, once its breaker (5 s reset) lets it reach Redis
    # again, has written the completion it missed there: from then on no older state can
    # replace the entry (writes are version-guarded), so nothing can make a read go back.
    restored = time.monotonic()
    reads: list[tuple[float, str]] = []

    def replayed() -> bool:
        task = stack.get(task_id)
        if not reads or reads[-1][1] != task["status"]:
            reads.append((round(time.monotonic() - restored, 1), task["status"]))
        return "missed writes replayed" in worker.output()

    wait_for(replayed, RECOVERY_S, "the worker to write the completion it missed into the cache")
    assert [status for _, status in reads] == ["COMPLETED"], f"(seconds after the restore, status): {reads}"
    assert_completed(stack.get(task_id), "slept nap")
    with redis.Redis.from_url(stack.redis_url) as client:
        entry = client.get(f"{stack.cache_prefix}task:{task_id}")
    assert entry is not None, "the replayed completion is not in the cache"
    assert json.loads(entry.partition(b":")[2])["status"] == "COMPLETED", entry
    assert stack.sql("SELECT status::text, result FROM tasks WHERE id = %s", task_id) == [
        ("COMPLETED", "slept nap")
    ]


# -- PostgreSQL ------------------------------------------------------------------------


def test_the_api_answers_503_and_writes_nothing_while_postgres_is_unreachable(
    fault_stack: Stack, proxies: Proxies
) -> None:
    stack = fault_stack
    database = proxies(stack.database_url)
    stack.start_api(TASKCORE_DATABASE_URL=database.url, TASKCORE_DATABASE_TIMEOUT_S="2")
    start_worker(stack)  # straight to the database
    before = stack.submit("before")["id"]
    assert_completed(stack.wait_final(before), "erofeb")
    assert stack.sql("SELECT count(*) FROM tasks") == [(1,)]

    database.cut()
    latencies: list[float] = []
    with httpx.Client(timeout=15) as client:
        for i in range(3):
            response, took = timed_post(client, stack, f"refused {i}")
            latencies.append(took)
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) > 0
            problem = response.json()
            assert (problem["status"], problem["title"]) == (503, "Service Unavailable"), problem
            assert "Traceback" not in response.text
        unknown = client.get(f"{stack.base_url}/tasks/987654")
        assert unknown.status_code == 503, unknown.text  # not 404: the database cannot say
        assert unknown.headers["content-type"] == "application/problem+json"
        assert int(unknown.headers["retry-after"]) > 0
        # A finished task is still served from the cache.
        cached = client.get(f"{stack.base_url}/tasks/{before}")
        assert cached.status_code == 200, cached.text
        assert_completed(cached.json(), "erofeb")
        ready = client.get(f"{stack.base_url}/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["postgres"].startswith("unavailable")
    assert stack.sql("SELECT count(*) FROM tasks") == [(1,)]  # nothing written

    database.restore()
    restored = time.monotonic()
    with httpx.Client(timeout=15) as client:

        def submitted() -> httpx.Response | None:
            response = client.post(f"{stack.base_url}/tasks/", json={"input_data": "after"})
            assert response.status_code in (201, 503), response.text
            return response if response.status_code == 201 else None

        after = wait_for(submitted, RECOVERY_S, "a submit to succeed again", interval=0.5).json()
        recovered_s = time.monotonic() - restored
        unknown = client.get(f"{stack.base_url}/tasks/987654")
        assert unknown.status_code == 404, unknown.text
    assert_completed(stack.wait_final(after["id"]), "retfa")
    assert stack.sql("SELECT count(*) FROM tasks") == [(2,)]  # the failed attempts wrote nothing
    print(
        f"\npostgres cut: 503 in {[round(t, 2) for t in latencies]} s;"
        f" submits work again {recovered_s:.1f} s after the restore"
    )


def test_the_api_answers_503_when_postgres_stops_answering(fault_stack: Stack, proxies: Proxies) -> None:
    stack = fault_stack
    database = proxies(stack.database_url)
    api_session = f"{stack.queue_name}-api"  # its database sessions' application_name
    stack.start_api(
        TASKCORE_DATABASE_URL=database.url, TASKCORE_DATABASE_TIMEOUT_S="2", PGAPPNAME=api_session
    )
    start_worker(stack)  # straight to the database
    # Delayed a little, so it is still PENDING when the submit's batched confirmation
    # (an UPDATE 50 ms after the publish, of PENDING rows only) records it.
    before = stack.submit("before", delay_s=0.3)["id"]
    assert_completed(stack.wait_final(before), "erofeb")
    # Until that confirmation is written and the API's sessions are idle, so its pool
    # holds an idle connection when the database goes silent.
    settled = (
        "SELECT (SELECT dispatched_at IS NOT NULL FROM tasks WHERE id = %s) AND NOT EXISTS"
        " (SELECT FROM pg_stat_activity WHERE application_name = %s AND state <> 'idle')"
    )
    wait_for(
        lambda: stack.sql(settled, before, api_session) == [(True,)],
        RECOVERY_S,
        "the submit's confirmation to be written and the API's connections to be idle",
        interval=0.02,
    )

    database.pause()
    with httpx.Client(timeout=10) as client:
        response, took = timed_post(client, stack, "unanswered")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert took < 8
    database.restore()
    after = stack.submit("after")["id"]
    assert_completed(stack.wait_final(after), "retfa")
