"""Chaos: every process and service fails once while clients keep submitting.

One API and two workers run on private services the test may break: a
PostgreSQL 15 primary (``postgres_servers.py``; its standby idles), a
``redis-server`` with no persistence and a single RabbitMQ node
(``rabbitmq_cluster.py``). Client threads submit ``reverse`` and ``record``
tasks at a steady pace, each under its own ``Idempotency-Key``, and retry the
same request (same key, same body) on 503, on connection errors and on
timeouts until it is accepted. Meanwhile, one after the other: a worker is
SIGKILLed (another starts), the API is SIGKILLed (another starts on the same
port), PostgreSQL is killed -9 and started again (crash recovery), Redis is
killed and started again (empty) and the RabbitMQ node is shut down and
started again. After each fault the test waits for recovery: a new task
submitted after it completes, and so does every task that was pending or
running when it struck.

Then every key must be exactly one task (the database's ``idempotency_keys``
against the ids the clients got, no task without a key), every task
COMPLETED with its input reversed, every HTTP answer 201 or 503, and ``GET``
of each task must agree with the database.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.e2e.conftest import Process, Stack
from tests.integration.faults.conftest import APP
from tests.integration.faults.handlers import runs
from tests.integration.faults.test_worker_crashes import read_all, sigkill, start_ready_worker, wait_until
from tests.integration.postgres_servers import (  # noqa: F401  (fixtures)
    PrimaryWithStandby,
    ReplicatedDatabase,
    free_port,
    pg_primary_with_standby,
    replicated_database,
)
from tests.integration.rabbitmq_cluster import RabbitCluster, rabbit_node  # noqa: F401  (fixture)
from tests.integration.redis_servers import RedisServer, require_binaries

# Services start in 5-20 s, the run takes about a minute; pytest-timeout counts the fixtures.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PACE_PER_S = 14  # new keys a second, over all client threads
CLIENTS = 6
MIN_KEYS = 700  # the clients go on until every fault is over and at least this many keys were sent
MAX_KEYS = 2000
REQUEST_TIMEOUT_S = 2.0  # shorter than a submit may wait for the database: retries race originals
RETRY_PAUSE_S = 0.2
KEY_DEADLINE_S = 120.0  # one key, retried, must be accepted within this
RECOVERY_TIMEOUT_S = 120.0
OUTAGE_S = 3.0  # each service stays down this long, and until the system has noticed
GAP_ACCEPTS = 30  # keys accepted after one recovery before the next fault (a few seconds)
FINAL = ("COMPLETED", "FAILED", "CANCELLED")
UNPUBLISHED = "stored but not published"  # the API's log line for a submit the broker did not take


@dataclass(frozen=True)
class Key:
    """One client request: the key, and the body sent with it every time."""

    name: str
    type: str
    input: str

    @property
    def body(self) -> dict[str, Any]:
        return {"type": self.type, "input_data": self.input}

    @property
    def expected(self) -> str:
        return self.input[::-1]  # both handlers reverse their input


def key_of(n: int) -> Key:
    if n % 2:  # ``record`` leaves a line per run in the fault folder
        return Key(f"chaos-{n:04d}", "record", f"record-{n:04d}")
    return Key(f"chaos-{n:04d}", "reverse", f"reverse {n:04d}")


class Clients:
    """Client threads that submit keys at ``PACE_PER_S``, each retried with the same
    key and body until it is accepted; every answer is counted."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._lock = threading.Lock()
        self.answers: Counter[str] = Counter()  # HTTP status, or the transport error's name
        self.retries = 0
        self.replayed = 0  # answers with Idempotent-Replayed: true
        self.keys: dict[str, Key] = {}
        self.accepted: dict[str, int] = {}  # key -> the task id its answer named
        self.accepted_at: list[float] = []  # time.monotonic() of each accept
        self.unexpected: list[str] = []
        self._next = 0
        self._no_new_keys = threading.Event()
        self._abort = threading.Event()
        self._started = 0.0
        self._threads = [
            threading.Thread(target=self._run, name=f"chaos-client-{i}", daemon=True) for i in range(CLIENTS)
        ]

    def start(self) -> None:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()

    def finish(self, timeout: float) -> None:
        """No new keys; wait until every key sent is accepted (or given up)."""
        self._no_new_keys.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), f"clients still retrying: {self.answers}"

    def abort(self) -> None:
        self._no_new_keys.set()
        self._abort.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)

    def accepted_count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def _take(self) -> Key | None:
        with self._lock:
            enough = self._no_new_keys.is_set() and self._next >= MIN_KEYS
            if enough or self._next >= MAX_KEYS or self._abort.is_set():
                return None
            n, self._next = self._next, self._next + 1
        time.sleep(max(0.0, self._started + n / PACE_PER_S - time.monotonic()))
        return key_of(n)

    def _run(self) -> None:
        with httpx.Client(base_url=self._base_url, timeout=REQUEST_TIMEOUT_S) as client:
            while (key := self._take()) is not None:
                self.submit(client, key)

    def submit(self, client: httpx.Client, key: Key) -> int | None:
        """POST until 201 (or 200); the task id, or None after an unexpected answer."""
        with self._lock:
            self.keys[key.name] = key
        deadline = time.monotonic() + KEY_DEADLINE_S
        attempt = 0
        while not self._abort.is_set():
            response: httpx.Response | None
            try:
                response = client.post("/tasks/", json=key.body, headers={"Idempotency-Key": key.name})
                answer = str(response.status_code)
            except httpx.TransportError as exc:  # the API is down, restarting, or was killed mid-request
                response, answer = None, type(exc).__name__
            with self._lock:
                self.answers[answer] += 1
                self.retries += attempt > 0
            attempt += 1
            if response is not None and response.status_code in (200, 201):
                task_id = int(response.json()["id"])
                with self._lock:
                    self.accepted[key.name] = task_id
                    self.accepted_at.append(time.monotonic())
                    self.replayed += response.headers.get("Idempotent-Replayed") == "true"
                return task_id
            if response is not None and response.status_code != 503:
                with self._lock:
                    self.unexpected.append(f"{key.name}: {response.status_code} {response.text[:500]}")
                return None
            if time.monotonic() > deadline:
                with self._lock:
                    self.unexpected.append(f"{key.name}: not accepted within {KEY_DEADLINE_S:g} s")
                return None
            time.sleep(RETRY_PAUSE_S)
        return None

    def longest_gap(self, since: float, until: float) -> float:
        """The longest time between accepts within [since, until]: how long clients got nothing in."""
        with self._lock:
            times = sorted(t for t in self.accepted_at if since <= t <= until)
        edges = [since, *times, until]
        return max(b - a for a, b in itertools.pairwise(edges))


@dataclass
class Chaos:
    """The system under test and the services the test breaks."""

    stack: Stack
    postgres: PrimaryWithStandby
    redis: RedisServer
    rabbit: RabbitCluster
    fault_dir: Path
    api_port: int
    api: Process | None = None
    workers: list[Process] = field(default_factory=list)

    def start_api(self) -> Process:
        self.api = self.stack.start_api(port=self.api_port)
        return self.api

    def pending(self) -> list[int]:
        rows = self.stack.sql("SELECT id FROM tasks WHERE status IN ('PENDING', 'PROCESSING')")
        return [task_id for (task_id,) in rows]

    def unfinished(self, ids: list[int]) -> int:
        query = "SELECT count(*) FROM tasks WHERE id = ANY(%s::bigint[]) AND status::text <> ALL(%s::text[])"
        ((count,),) = self.stack.sql(query, ids, list(FINAL))
        return int(count)

    def completed(self, task_id: int) -> bool:
        return self.stack.sql("SELECT status::text FROM tasks WHERE id = %s", task_id) == [("COMPLETED",)]

    def readiness(self, check: str) -> str:
        """What the API's readiness report says of one dependency."""
        response = httpx.get(f"{self.stack.base_url}/health/ready", timeout=10)
        return str(response.json()["checks"][check])

    def status_counts(self) -> dict[str, int]:
        return dict(self.stack.sql("SELECT status::text, count(*) FROM tasks GROUP BY 1"))

    def logs(self) -> str:
        """The tails of every process's log, for a failure message."""
        tails = []
        for process in self.stack.processes:
            tail = process.output()[-4000:]
            tails.append(f"== {process.log.name} (exit {process.popen.poll()})\n{tail}")
        return "\n".join(tails)


# The API and Redis are restarted on their ports, so these (like the other servers')
# are below Linux's ephemeral range: no outgoing connection takes one while it is down.


@pytest.fixture
def chaos_redis(tmp_path: Path) -> Iterator[RedisServer]:
    require_binaries()
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder, port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def chaos(
    pg_primary_with_standby: PrimaryWithStandby,  # noqa: F811
    replicated_database: ReplicatedDatabase,  # noqa: F811
    rabbit_node: RabbitCluster,  # noqa: F811
    chaos_redis: RedisServer,
    tmp_path: Path,
) -> Iterator[Chaos]:
    """API and workers on the private services; every process killed afterwards, before the services go."""
    fault_dir = tmp_path / "runs"
    fault_dir.mkdir()
    unique = f"chaos.{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "TASKCORE_DATABASE_URL": replicated_database.primary_url,
        "TASKCORE_REDIS_URL": chaos_redis.url,
        "TASKCORE_AMQP_URL": rabbit_node.url(0),
        "TASKCORE_QUEUE_NAME": unique,
        "TASKCORE_CACHE_PREFIX": f"{unique}:",
        "TASKCORE_APP": APP,
        "TASKCORE_FAULT_DIR": str(fault_dir),
        "TASKCORE_AUTH": "none",
        "TASKCORE_MIGRATE_ON_START": "false",
        "TASKCORE_LOG_FORMAT": "console",
        "TASKCORE_LOG_LEVEL": "INFO",
        "TASKCORE_WORKER_METRICS_PORT": "0",
        # Work in flight whenever a fault strikes, and recovery within seconds.
        "TASKCORE_REVERSE_DELAY_S": "1",
        "TASKCORE_LEASE_S": "3",
        "TASKCORE_SWEEP_INTERVAL_S": "0.5",
        "TASKCORE_REDISPATCH_GRACE_S": "2",
        "TASKCORE_LOST_WAKE_UP_GRACE_S": "10",
        "TASKCORE_SHUTDOWN_GRACE_S": "10",
        "TASKCORE_RETRY_BASE_S": "0.2",
        "TASKCORE_RETRY_CAP_S": "0.5",
        # Not what is tested here: the clients' retries must not meet a 429.
        "TASKCORE_RATE_LIMIT_SUBMIT_PER_MINUTE": "0",
    }
    stack = Stack(
        env=env,
        tmp=tmp_path,
        database_url=replicated_database.primary_url,
        redis_url=chaos_redis.url,
        queue_name=unique,
        cache_prefix=f"{unique}:",
    )
    try:
        yield Chaos(stack, pg_primary_with_standby, chaos_redis, rabbit_node, fault_dir, free_port())
    finally:
        stack.stop_all()


@dataclass
class Fault:
    name: str
    strike: Callable[[], str]  # breaks something and brings it back; returns a note
    struck_at: float = 0.0
    back_s: float = 0.0  # until the broken thing ran again
    recovered_s: float = 0.0  # until a new task and every task in flight at the fault were done
    note: str = ""
    in_flight: int = 0

    def summary(self, clients: Clients) -> str:
        gap = clients.longest_gap(self.struck_at, self.struck_at + self.recovered_s)
        return (
            f"{self.name}{f' ({self.note})' if self.note else ''}: back {self.back_s:.1f} s,"
            f" longest without a 201 {gap:.1f} s, {self.in_flight} in flight all done"
            f" and a new task done after {self.recovered_s:.1f} s"
        )


def test_each_key_ends_as_one_right_task_when_every_process_and_service_fails_once(chaos: Chaos) -> None:
    stack = chaos.stack
    started = time.monotonic()
    chaos.start_api()
    chaos.workers = [start_ready_worker(stack), start_ready_worker(stack)]
    clients = Clients(stack.base_url)

    def answered(answer: str) -> Callable[[], bool]:
        """True once a client got ``answer`` (a status, or a transport error's name) again."""
        seen = clients.answers[answer]
        return lambda: clients.answers[answer] > seen

    def hold_down(noticed: Callable[[], bool], what: str) -> float:
        """Keep a service down for ``OUTAGE_S``, and at least until ``noticed``; the seconds it was."""
        down_at = time.monotonic()
        wait_until(lambda: time.monotonic() - down_at >= OUTAGE_S and noticed(), 30, lambda: what)
        return time.monotonic() - down_at

    def kill_worker() -> str:
        def processing() -> int:
            return chaos.status_counts().get("PROCESSING", 0)

        wait_until(lambda: processing() >= 3, 30, lambda: f"{processing()} running")
        running = processing()
        victim = chaos.workers.pop(0)
        assert sigkill(victim) == -signal.SIGKILL
        chaos.workers.append(start_ready_worker(stack))
        return f"{running} tasks running on the two"

    def kill_api() -> str:
        assert chaos.api is not None
        refused = answered("ConnectError")
        assert sigkill(chaos.api) == -signal.SIGKILL
        down_s = hold_down(refused, f"no client met the dead API: {clients.answers}")
        chaos.start_api()  # on the same port: the clients keep their URL
        return f"down {down_s:.1f} s"

    def restart_postgres() -> str:
        refused, gave_up = answered("503"), answered("ReadTimeout")
        chaos.postgres.primary.kill()  # every process of the server at once: crash recovery follows
        down_s = hold_down(lambda: refused() or gave_up(), f"no client met the outage: {clients.answers}")
        chaos.postgres.primary.start()
        return f"down {down_s:.1f} s"

    def restart_redis() -> str:
        chaos.redis.kill()
        down_s = hold_down(lambda: chaos.readiness("redis") != "ok", "the API's readiness says Redis is ok")
        chaos.redis.start()  # on the same port, empty
        return f"down {down_s:.1f} s"

    def restart_rabbitmq() -> str:
        assert chaos.api is not None
        api = chaos.api

        def unpublished() -> int:
            return api.output().count(UNPUBLISHED)

        before = unpublished()
        chaos.rabbit.shutdown_node(0)
        down_s = hold_down(lambda: unpublished() > before, "no submit met the outage")
        chaos.rabbit.start_node(0)
        return f"down {down_s:.1f} s, {unpublished() - before} submits stored but not published"

    faults = [
        Fault("worker SIGKILL", kill_worker),
        Fault("API SIGKILL", kill_api),
        Fault("PostgreSQL kill -9 and start", restart_postgres),
        Fault("Redis kill -9 and start, empty", restart_redis),
        Fault("RabbitMQ node shutdown and start", restart_rabbitmq),
    ]

    def probe(index: int) -> int:
        """A task of the driver's own, submitted (retrying like the clients) after a fault."""
        with httpx.Client(base_url=stack.base_url, timeout=REQUEST_TIMEOUT_S) as client:
            task_id = clients.submit(client, Key(f"probe-{index}", "reverse", f"probe {index}"))
        assert task_id is not None, clients.unexpected
        return task_id

    def strike(index: int, fault: Fault) -> None:
        """A few seconds of accepted submits, the fault, then wait for recovery."""
        accepted = clients.accepted_count()
        wait_until(
            lambda: clients.accepted_count() >= accepted + GAP_ACCEPTS,
            RECOVERY_TIMEOUT_S,
            lambda: f"before {fault.name}: {clients.answers}",
        )
        in_flight = chaos.pending()
        fault.in_flight = len(in_flight)
        fault.struck_at = time.monotonic()
        fault.note = fault.strike()
        fault.back_s = time.monotonic() - fault.struck_at
        probe_id = probe(index)
        wait_until(
            lambda: chaos.completed(probe_id) and chaos.unfinished(in_flight) == 0,
            RECOVERY_TIMEOUT_S,
            lambda: f"after {fault.name}: {chaos.status_counts()}\n{chaos.logs()}",
        )
        fault.recovered_s = time.monotonic() - fault.struck_at

    clients.start()
    try:
        for index, fault in enumerate(faults):
            strike(index, fault)
        clients.finish(timeout=KEY_DEADLINE_S + REQUEST_TIMEOUT_S)
    finally:
        clients.abort()
    submitted_s = time.monotonic() - started

    assert clients.unexpected == [], clients.unexpected[:20]
    done_s = wait_until(
        lambda: sum(chaos.status_counts().get(s, 0) for s in FINAL) >= len(clients.keys),
        RECOVERY_TIMEOUT_S,
        lambda: f"{chaos.status_counts()} of {len(clients.keys)}\n{chaos.logs()}",
    )

    # Every key is exactly one task, the one its answer named, and no task is without a key.
    keys = dict(stack.sql("SELECT key, task_id FROM idempotency_keys"))
    assert keys == clients.accepted
    assert len(set(keys.values())) == len(keys)
    rows = stack.sql("SELECT id, type, input, status::text, result, error, lease_until FROM tasks")
    assert sorted(row[0] for row in rows) == sorted(keys.values()), "tasks without a key, or keys without one"

    # Every task COMPLETED, with its input reversed, no lease left.
    by_id = {row[0]: row for row in rows}
    wrong = [
        by_id[keys[name]]
        for name, key in clients.keys.items()
        if by_id[keys[name]][1:] != (key.type, key.input, "COMPLETED", key.expected, None, None)
    ]
    assert wrong == [], wrong[:20]

    # No answer but 201 (or 200) and 503: a 500, or any 4xx, fails.
    statuses = {answer for answer in clients.answers if answer.isdigit()}
    assert statuses <= {"200", "201", "503"}, clients.answers

    # What clients read agrees with the database (the cache, emptied once, is refilled).
    ids = sorted(keys.values())
    expected = [("COMPLETED", by_id[i][4]) for i in ids]
    converged_s = wait_until(
        lambda: [(v["status"], v["result"]) for v in read_all(stack, ids)] == expected,
        30,
        lambda: "GET /tasks/{id} still disagrees with the database",
    )

    # The processes that were not killed went through every fault, and drain cleanly.
    assert chaos.api is not None
    survivors = [chaos.api, *chaos.workers]
    for process in survivors:
        assert process.popen.poll() is None, chaos.logs()
    for process in survivors:
        assert process.stop(signal.SIGTERM) == 0, process.output()[-4000:]

    record_runs = [len(runs(chaos.fault_dir, k.input)) for k in clients.keys.values() if k.type == "record"]
    assert min(record_runs) >= 1
    ran_twice = sum(count > 1 for count in record_runs)
    unpublished = sum(p.output().count(UNPUBLISHED) for p in stack.processes if p.name == "api")
    print(
        f"\nchaos: {len(keys)} keys, {len(rows)} tasks, all COMPLETED right; answers {dict(clients.answers)},"
        f" {clients.retries} retries, {clients.replayed} replayed; {unpublished} stored but not published;"
        f" {ran_twice} record tasks ran more than once; submitting {submitted_s:.0f} s, all done"
        f" {done_s:.1f} s later, GETs agreed after {converged_s:.1f} s"
    )
    for fault in faults:
        print(f"  {fault.summary(clients)}")
