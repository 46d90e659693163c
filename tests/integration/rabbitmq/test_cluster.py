"""Quorum queues on a private three-node cluster, and losing the node that leads them.

``rabbit_cluster`` (``tests/integration/rabbitmq_cluster.py``) starts the
nodes once for this module, ~30 s. The end-to-end test kills a node, so it
runs last.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from taskcore.adapters.rabbitmq import RabbitQueue
from taskcore.adapters.rabbitmq.topology import delay_bucket_ms, delay_queue
from taskcore.errors import QueueUnavailable
from tests.integration.e2e.conftest import Process, Stack, free_port
from tests.integration.faults.proxies import TcpProxy
from tests.integration.rabbitmq_cluster import RabbitCluster

# A private cluster starts in 20-35 s on a busy 2-core machine (up to its own 180 s
# bound, tried twice on other ports), and pytest-timeout counts the fixture too.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]

TASKS = 1000
KILL_AFTER = 300  # submitted before the leader's node is killed
DEADLINE_S = 120.0


async def take(queue: RabbitQueue, count: int) -> list[bytes]:
    bodies = []
    async with queue.consume(prefetch=count) as consumer:
        for _ in range(count):
            delivery = await asyncio.wait_for(consumer.next(), 15)
            bodies.append(delivery.body)
            await delivery.ack()
    return bodies


async def test_quorum_queues_are_declared_and_carry_messages(
    rabbit_cluster: RabbitCluster, run_id: str
) -> None:
    name = f"{run_id}.{uuid.uuid4().hex[:8]}"
    urls = ",".join(rabbit_cluster.urls())
    queue = RabbitQueue(urls, queue_name=name, queue_type="quorum", connection_name=name)
    await queue.open()
    try:
        await queue.publish(b"now")  # returns once confirmed
        await queue.publish(b"later", delay=timedelta(milliseconds=300))
        listed = await asyncio.to_thread(rabbit_cluster.queues, "name", "type")
        types = {row["name"]: row["type"] for row in listed}
        bucket = delay_queue(name, delay_bucket_ms(timedelta(milliseconds=300)))
        assert (types[name], types[f"{name}.dlq"], types[bucket]) == ("quorum", "quorum", "quorum"), types
        assert sorted(await take(queue, 2)) == [b"later", b"now"]
    finally:
        await queue.close()


async def test_a_dead_first_node_costs_one_open(rabbit_cluster: RabbitCluster, run_id: str) -> None:
    name = f"{run_id}.{uuid.uuid4().hex[:8]}"
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"  # nothing listens there
    queue = RabbitQueue(
        ",".join([dead, *rabbit_cluster.urls()]),
        queue_name=name,
        queue_type="quorum",
        connection_name=name,
        connect_timeout_s=3,
    )
    try:
        with pytest.raises(QueueUnavailable, match="cannot reach the broker"):
            await queue.open()
        await queue.open()  # this attempt goes to the next node
        await queue.publish(b"1")
        assert await take(queue, 1) == [b"1"]
    finally:
        await queue.close()


async def test_a_lost_connection_reconnects_to_the_next_node_at_once(
    rabbit_cluster: RabbitCluster, run_id: str
) -> None:
    """The first attempt after a lost connection goes to another node, not the lost one again
    (which fails, and the next attempt waits out the reconnect interval)."""
    name = f"{run_id}.{uuid.uuid4().hex[:8]}"
    interval_s = 5.0
    with TcpProxy(rabbit_cluster.url(0)) as first:
        urls = [first.url, *rabbit_cluster.urls()[1:]]
        queue = RabbitQueue(
            ",".join(urls),
            queue_name=name,
            queue_type="quorum",
            reconnect_interval_s=interval_s,
            publish_timeout_s=1,
        )
        await queue.open()
        try:
            await queue.publish(b"before")
            # aio-pika sleeps the reconnect interval after every connect before it
            # looks at a lost connection: lose it after that, as a long-lived process would.
            await asyncio.sleep(interval_s + 0.5)
            first.cut()  # node 1 is gone, as far as this client can tell
            loop = asyncio.get_running_loop()
            cut_at = loop.time()
            async with asyncio.timeout(interval_s - 2):  # less than the wait before a second attempt
                while True:
                    try:
                        await queue.publish(b"after")  # fails fast until connected to another node
                        break
                    except QueueUnavailable:
                        await asyncio.sleep(0.02)
            print(f"\npublished through another node {loop.time() - cut_at:.2f} s after the cut")
            assert sorted(await take(queue, 2)) == [b"after", b"before"]
        finally:
            await queue.close()


# -- end to end: one API, two workers, the leader's node killed mid-run


def wait_for_log(process: Process, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.output():
        assert process.popen.poll() is None, f"{process.name} exited:\n{process.output()}"
        assert time.monotonic() < deadline, f"{text!r} not in the {process.name} log:\n{process.output()}"
        time.sleep(0.1)


class Submitter:
    """POSTs task ``n`` with ``Idempotency-Key: failover-<n>`` until it gets a 201, retrying 503s and
    connection errors with the same key; records every answer."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.answers: Counter[str] = Counter()
        self.slowest: list[tuple[float, float, str]] = []  # (wall time sent, seconds taken, answer)
        self._lock = threading.Lock()
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=30)
        return client

    def __call__(self, n: int) -> int:
        deadline = time.monotonic() + 60
        while True:
            sent, started = time.time(), time.monotonic()
            try:
                response = self._client().post(
                    f"{self.base_url}/tasks/",
                    json={"type": "reverse", "input_data": f"task-{n}"},
                    headers={"Idempotency-Key": f"failover-{n}"},
                )
                answer = str(response.status_code)
            except httpx.TransportError as exc:
                response, answer = None, type(exc).__name__
            with self._lock:
                self.answers[answer] += 1
                self.slowest.append((sent, time.monotonic() - started, answer))
            if response is not None and response.status_code == 201:
                task_id: int = response.json()["id"]
                return task_id
            assert response is None or answer == "503", f"task {n}: {answer} {response.text}"
            assert time.monotonic() < deadline, f"task {n} not accepted within 60 s: {self.answers}"
            time.sleep(0.2)


def test_killing_the_leaders_node_mid_run_loses_nothing(stack: Stack, rabbit_cluster: RabbitCluster) -> None:
    cluster = rabbit_cluster
    stack.env.update(
        {
            "TASKCORE_AMQP_URL": ",".join(cluster.urls()),
            "TASKCORE_AMQP_QUEUE_TYPE": "quorum",
            "TASKCORE_REVERSE_DELAY_S": "0.05",
            "TASKCORE_WORKER_CONCURRENCY": "32",
            "TASKCORE_LEASE_S": "5",
            "TASKCORE_SWEEP_INTERVAL_S": "0.5",
            "TASKCORE_REDISPATCH_GRACE_S": "2",
            "TASKCORE_LOST_WAKE_UP_GRACE_S": "5",
            "TASKCORE_RATE_LIMIT_SUBMIT_PER_MINUTE": "100000",
        }
    )
    api = stack.start_api()
    workers = [stack.start_worker() for _ in range(2)]
    for worker in workers:
        wait_for_log(worker, "worker consuming")
    leader = cluster.leader(stack.queue_name)
    assert leader in cluster.nodes, cluster.queues("name", "leader")

    submit = Submitter(stack.base_url)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(submit, n) for n in range(TASKS)]
        while sum(future.done() for future in futures) < KILL_AFTER:
            assert time.monotonic() - started < 60, "300 submits took over 60 s"
            time.sleep(0.005)
        killed_at = time.time()
        cluster.stop_node(cluster.nodes.index(leader))
        submitted_at_kill = sum(future.done() for future in futures)
        ids = [future.result() for future in futures]
    submitted_s = time.monotonic() - started

    def counts() -> dict[str, int]:
        return dict(stack.sql("SELECT status::text, count(*) FROM tasks GROUP BY status"))

    deadline = time.monotonic() + DEADLINE_S
    while counts().get("COMPLETED", 0) < TASKS:
        assert all(p.popen.poll() is None for p in (api, *workers)), "a process exited"
        assert time.monotonic() < deadline, f"after {DEADLINE_S:g} s: {counts()}"
        time.sleep(0.25)
    done_s = time.monotonic() - started

    # 0 lost, 0 duplicates: one task per key, the one its 201 named; 0 stuck, all with the right result.
    keys = dict(stack.sql("SELECT key, task_id FROM idempotency_keys"))
    assert keys == {f"failover-{n}": task_id for n, task_id in enumerate(ids)}
    assert len(set(ids)) == TASKS
    rows = stack.sql("SELECT id, status::text, input, result, attempts, finished_at FROM tasks")
    assert len(rows) == TASKS, counts()
    by_id = {row[0]: row for row in rows}
    for n, task_id in enumerate(ids):
        _, status, given, result, _, _ = by_id[task_id]
        assert (status, given, result) == ("COMPLETED", f"task-{n}", f"task-{n}"[::-1]), by_id[task_id]
    transport_errors = {"ConnectError", "ReadError", "RemoteProtocolError"}
    assert set(submit.answers) <= {"201", "503", *transport_errors}, submit.answers
    assert cluster.leader(stack.queue_name) not in (None, leader)

    # Evidence for "carries on within seconds".
    kill = datetime.fromtimestamp(killed_at, UTC)
    finished = sorted(row[5] for row in rows)
    after = [at for at in finished if at > kill]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(finished) if b > kill]
    created_after = stack.sql("SELECT min(finished_at) FROM tasks WHERE created_at > %s", kill)[0][0]
    slow_after = max((s for sent, s, _ in submit.slowest if sent >= killed_at), default=0.0)
    report = {
        "leader killed": leader,
        "new leader": cluster.leader(stack.queue_name),
        "submitted when killed": submitted_at_kill,
        "finished before kill": len(finished) - len(after),
        "first completion after kill s": round((after[0] - kill).total_seconds(), 3) if after else None,
        "first completion of a task created after kill s": round((created_after - kill).total_seconds(), 3)
        if created_after
        else None,
        "longest gap between completions after kill s": round(max(gaps, default=0.0), 3),
        "slowest submit after kill s": round(slow_after, 3),
        "all submitted s": round(submitted_s, 1),
        "all completed s": round(done_s, 1),
        "answers": dict(submit.answers),
        "tasks run more than once": sum(1 for row in rows if row[4] > 1),
    }
    print("\nfailover:", json.dumps(report, indent=1))

    for process in (*workers, api):
        assert process.popen.poll() is None, f"{process.name} exited:\n{process.output()}"
    for process in (*workers, api):
        assert process.stop() == 0, process.output()
