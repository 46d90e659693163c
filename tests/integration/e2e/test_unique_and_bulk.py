"""Unique tasks and bulk actions through real ``taskcore api`` and ``worker`` processes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Process, Stack

pytestmark = pytest.mark.integration

APP = "tests.integration.e2e.bulk_handlers:registry"


def ready_worker(stack: Stack, **env: str) -> Process:
    worker = stack.start_worker(**env)
    deadline = time.monotonic() + 30
    while "worker consuming" not in worker.output():
        assert worker.popen.poll() is None, worker.output()
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    return worker


def wait_until(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def count(stack: Stack, where: str, *params: Any) -> int:
    return int(stack.sql(f"SELECT count(*) FROM tasks WHERE {where}", *params)[0][0])


def test_concurrent_unique_submits_through_two_apis_make_one_task(stack: Stack) -> None:
    """40 clients at once, split over two API processes (each coalescing its
    submits into shared INSERTs), some with Idempotency-Keys: one task, one
    201, and every other answer that task with ``Deduplicated: true``."""
    apis = []
    for _ in range(2):
        stack.start_api()
        apis.append(stack.base_url)
    clients = 40
    start = threading.Barrier(clients)
    body = {"input_data": "once", "unique_key": "nightly-report"}

    def submit(n: int) -> httpx.Response:
        headers = {"Idempotency-Key": f"client-{n}"} if n % 4 == 0 else {}
        start.wait(timeout=30)
        return httpx.post(f"{apis[n % 2]}/tasks/", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        responses = list(pool.map(submit, range(clients)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * (clients - 1) + [201], [r.text for r in responses if r.status_code >= 300]
    assert len({response.json()["id"] for response in responses}) == 1
    assert all(r.headers.get("deduplicated") == "true" for r in responses if r.status_code == 200)
    assert stack.sql("SELECT count(*), min(unique_key) FROM tasks") == [(1, "nightly-report")]
    (task_id,) = {response.json()["id"] for response in responses}

    # No worker yet, so the task stayed PENDING through the burst. Once it has
    # run, the key is free: the next submit is a new task.
    ready_worker(stack)
    assert stack.wait_final(task_id)["result"] == "ecno"
    again = httpx.post(f"{apis[1]}/tasks/", json=body, timeout=30)
    assert again.status_code == 201
    assert again.json()["id"] != task_id
    # A client's retry under its Idempotency-Key still answers as its first use did.
    replay = httpx.post(f"{apis[0]}/tasks/", json=body, headers={"Idempotency-Key": "client-4"}, timeout=30)
    assert (replay.status_code, replay.json()["id"]) == (200, task_id)
    assert (replay.headers["deduplicated"], replay.headers["idempotent-replayed"]) == ("true", "true")


def test_bulk_cancel_reaches_running_tasks_and_bulk_retry_reruns_failures(
    stack: Stack, tmp_path: Path
) -> None:
    stack.env |= {"TASKCORE_APP": APP, "TASKCORE_LEASE_S": "3", "TASKCORE_WORKER_CONCURRENCY": "4"}
    stack.start_api()
    worker = ready_worker(stack)
    client = httpx.Client(base_url=stack.base_url, timeout=60)

    # Running and waiting naps: four run (the worker's slots), the rest wait.
    naps = [stack.submit(600, type="nap")["id"] for _ in range(12)]
    wait_until(lambda: count(stack, "status = 'PROCESSING'") == 4, "four naps running")
    cancelled = client.post("/tasks/cancel", json={"type": "nap"})
    assert cancelled.json() == {"matched": 12, "changed": 12, "next_cursor": None}
    assert count(stack, "id = ANY(%s) AND status = 'CANCELLED'", naps) == 12
    # The worker notices at its next heartbeat (every second here), stops the
    # handlers and frees its slots: a new task runs at once.
    wait_until(lambda: worker.output().count("was cancelled or taken over") == 4, "the handlers stopped", 15)
    quick = stack.submit("abc")["id"]
    assert stack.wait_final(quick, timeout=15)["result"] == "cba"
    assert client.post("/tasks/cancel", json={"type": "nap"}).json()["changed"] == 0  # safe to repeat
    assert count(stack, "id = ANY(%s) AND status = 'CANCELLED' AND result IS NULL", naps) == 12

    # Failures until the fix lands, then a bulk retry runs them all again.
    gate = tmp_path / "gate"
    failing = [stack.submit(str(gate), type="gated")["id"] for _ in range(10)]
    wait_until(lambda: count(stack, "id = ANY(%s) AND status = 'FAILED'", failing) == 10, "the failures")
    gate.touch()
    retried = client.post("/tasks/retry", json={"type": "gated", "status": "FAILED"})
    assert retried.json() == {"matched": 10, "changed": 10, "next_cursor": None}
    wait_until(lambda: count(stack, "id = ANY(%s) AND status = 'COMPLETED'", failing) == 10, "the reruns")
    assert stack.sql("SELECT DISTINCT result::text FROM tasks WHERE id = ANY(%s)", failing) == [('"passed"',)]
    assert client.post("/tasks/retry", json={"type": "gated", "status": "FAILED"}).json()["changed"] == 0
    assert worker.stop() == 0, worker.output()
    client.close()


def test_a_bulk_cancel_of_many_tasks_goes_in_batches_and_resumes_with_its_cursor(stack: Stack) -> None:
    """1,100 scheduled tasks: a call with limit 700 (a batch of 500, one of
    200) answers a cursor, and the call that passes it back does the rest.
    The rows are inserted as a submit stores them, but by SQL: a loaded
    machine takes a minute to submit 1,100 over HTTP, and the submit path is
    the other tests' subject."""
    stack.sql(
        "INSERT INTO tasks (type, input, status, attempts, max_attempts, version, created_at, updated_at,"
        " run_at) SELECT 'reverse', to_jsonb('t' || n), 'PENDING', 0, 3, 1, now() - n * interval '1 ms',"
        " now() - n * interval '1 ms', now() + interval '1 hour' FROM generate_series(1, 1100) AS n"
    )
    stack.start_api()
    newest = [task_id for (task_id,) in stack.sql("SELECT id FROM tasks ORDER BY created_at DESC, id DESC")]
    client = httpx.Client(base_url=stack.base_url, timeout=60)
    first = client.post("/tasks/cancel", json={"type": "reverse", "limit": 700}).json()
    assert (first["matched"], first["changed"]) == (700, 700)
    assert first["next_cursor"] is not None
    assert count(stack, "id = ANY(%s) AND status = 'CANCELLED'", newest[:700]) == 700
    assert count(stack, "status = 'CANCELLED'") == 700
    rest = client.post("/tasks/cancel", json={"type": "reverse", "cursor": first["next_cursor"]}).json()
    assert rest == {"matched": 400, "changed": 400, "next_cursor": None}
    assert count(stack, "status = 'CANCELLED' AND version = 2") == 1100
    retried = client.post("/tasks/retry", json={"status": "CANCELLED", "limit": 1000}).json()
    assert (retried["matched"], retried["changed"]) == (1000, 1000)
    # Each one's wake-up published, and its confirmation recorded (in batches, just after the answer).
    wait_until(lambda: count(stack, "status = 'PENDING' AND dispatched_at IS NOT NULL") == 1000, "confirms")
    client.close()
