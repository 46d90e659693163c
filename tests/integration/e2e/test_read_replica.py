"""A real ``taskcore api`` reading from a real streaming standby.

The API's primary and replica are the private pair of
``tests/integration/postgres_servers.py`` (started once for this module, a
database of its own per test); RabbitMQ is the shared one. Redis points at a
closed port, so every read reaches PostgreSQL instead of the cache. Which
node answered shows in the data (a standby told to apply commits late lacks
what the primary has) or in the standby's ``pg_stat_activity``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.e2e.conftest import Process, Stack
from tests.integration.postgres_servers import (  # noqa: F401  (fixtures)
    PrimaryWithStandby,
    ReplicatedDatabase,
    pg_primary_with_standby,
    replicated_database,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DEAD_REDIS = "redis://127.0.0.1:1/0"
AN_HOUR_S = 3600


def start_api(stack: Stack, database: ReplicatedDatabase) -> Process:
    return stack.start_api(
        TASKCORE_DATABASE_URL=database.primary_url,
        TASKCORE_DATABASE_READ_URL=database.standby_url,
        TASKCORE_REDIS_URL=DEAD_REDIS,
    )


def listed(stack: Stack) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.base_url}/tasks", params={"limit": 100}, timeout=10)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def readiness(stack: Stack) -> dict[str, Any]:
    response = httpx.get(f"{stack.base_url}/health/ready", timeout=10)
    assert response.status_code == 200, response.text  # the replica is never required
    checks: dict[str, Any] = response.json()["checks"]
    return checks


def wait_until(condition: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(0.05)


def api_reads_from_standby(pair: PrimaryWithStandby, database: ReplicatedDatabase, since: datetime) -> bool:
    """A session of the API on the standby has read the tasks table since then."""
    return any("FROM tasks" in query for query in pair.standby.client_queries(database.name, since))


def test_gets_and_listings_are_served_by_the_standby(
    pg_primary_with_standby: PrimaryWithStandby,  # noqa: F811
    replicated_database: ReplicatedDatabase,  # noqa: F811
    stack: Stack,  # after the database: its processes stop before the database is dropped
) -> None:
    pair = pg_primary_with_standby
    start_api(stack, replicated_database)
    old = stack.submit("old")
    pair.wait_replayed()

    pair.set_apply_delay(AN_HOUR_S)  # the standby now shows new commits an hour late
    cancel = httpx.post(f"{stack.base_url}/tasks/{old['id']}/cancel", timeout=10)
    assert cancel.json()["status"] == "CANCELLED", cancel.text  # on the primary
    new = stack.submit("new")

    assert stack.get(old["id"])["status"] == "PENDING"  # the standby's, older, row
    assert stack.get(new["id"]) == new  # not on the standby yet: from the primary
    assert [(t["id"], t["status"]) for t in listed(stack)] == [(old["id"], "PENDING")]

    pair.set_apply_delay(0)
    pair.wait_replayed()
    assert stack.get(old["id"])["status"] == "CANCELLED"
    assert [t["id"] for t in listed(stack)] == [new["id"], old["id"]]


def test_a_task_read_right_after_its_201_is_found_on_a_lagging_standby(
    pg_primary_with_standby: PrimaryWithStandby,  # noqa: F811
    replicated_database: ReplicatedDatabase,  # noqa: F811
    stack: Stack,
) -> None:
    delay_s = 5.0
    pair = pg_primary_with_standby
    start_api(stack, replicated_database)
    pair.set_apply_delay(delay_s)
    lagging = 0
    with psycopg.connect(replicated_database.standby_url, autocommit=True) as standby:
        for n in range(50):
            sent = time.monotonic()
            task = stack.submit(f"task {n}")
            assert stack.get(task["id"]) == task
            row = standby.execute("SELECT 1 FROM tasks WHERE id = %s", [task["id"]]).fetchone()
            # Committed after ``sent``, shown by the standby only delay_s after the commit:
            if time.monotonic() - sent < delay_s - 0.5:
                assert row is None, f"task {task['id']} on the standby before its apply delay"
                lagging += 1
    assert lagging > 0, "every round took longer than the apply delay: nothing was read behind it"


class Reader:
    """Reads the way clients do, in a thread, until stopped: a GET of each task
    and a listing per round. Any answer but a 200 is recorded as a failure."""

    def __init__(self, base_url: str, task_ids: list[int]) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=30)
        self._task_ids = task_ids
        self.rounds = 0
        self.failures: list[str] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-reader", daemon=True)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=60)
        self._client.close()

    def _run(self) -> None:
        paths = [*(f"/tasks/{task_id}" for task_id in self._task_ids), "/tasks?limit=100"]
        while not self._stopped.is_set():
            for path in paths:
                try:
                    response = self._client.get(path)
                except httpx.HTTPError as exc:
                    self.failures.append(f"GET {path}: {exc!r}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"GET {path}: {response.status_code} {response.text}")
            self.rounds += 1

    def wait_rounds(self, count: int, what: str) -> None:
        """Until ``count`` more rounds have been answered (started after this call)."""
        target = self.rounds + 1 + count
        wait_until(lambda: self.rounds >= target, f"{count} rounds of reads {what}")


def test_reads_keep_answering_while_the_standby_is_stopped_or_killed(
    pg_primary_with_standby: PrimaryWithStandby,  # noqa: F811
    replicated_database: ReplicatedDatabase,  # noqa: F811
    stack: Stack,
) -> None:
    pair, database = pg_primary_with_standby, replicated_database
    api = start_api(stack, database)
    ids = [stack.submit(f"read me {n}")["id"] for n in range(3)]
    pair.wait_replayed()

    with Reader(stack.base_url, ids) as reader:
        since = datetime.now(UTC)
        wait_until(lambda: api_reads_from_standby(pair, database, since), "the API to read from the standby")
        for go_away in (pair.standby.stop, pair.standby.kill):
            go_away()
            reader.wait_rounds(20, "with the standby away")  # from the primary: nothing else answers
            checks = readiness(stack)
            assert checks["postgres"] == "ok"
            assert checks["postgres-replica"].startswith("unavailable"), checks

            back_at = datetime.now(UTC)
            pair.standby.start()
            wait_until(
                lambda: api_reads_from_standby(pair, database, back_at),  # noqa: B023
                "the API to read from the standby again",
            )
            wait_until(lambda: readiness(stack)["postgres-replica"] == "ok", "the replica to be ready")
            reader.wait_rounds(5, "with the standby back")

    assert reader.failures == []
    assert api.output().count("read replica unavailable") == 2, api.output()  # one warning per outage


def test_the_api_starts_and_serves_while_the_standby_is_down(
    pg_primary_with_standby: PrimaryWithStandby,  # noqa: F811
    replicated_database: ReplicatedDatabase,  # noqa: F811
    stack: Stack,
) -> None:
    pair, database = pg_primary_with_standby, replicated_database
    pair.standby.stop()
    api = start_api(stack, database)

    task = stack.submit("no replica")
    assert stack.get(task["id"]) == task
    assert [t["id"] for t in listed(stack)] == [task["id"]]
    checks = readiness(stack)
    assert checks["postgres-replica"].startswith("unavailable"), checks
    assert "read replica unavailable at start" in api.output()

    since = datetime.now(UTC)
    pair.standby.start()
    pair.wait_replayed()

    def reads_from_standby() -> bool:
        assert stack.get(task["id"]) == task
        return api_reads_from_standby(pair, database, since)

    wait_until(reads_from_standby, "the API to read from the standby once it is up")
    assert readiness(stack)["postgres-replica"] == "ok"
