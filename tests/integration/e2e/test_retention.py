"""Retention with real processes: a worker's sweeper deletes only old finished
tasks, and ``taskcore prune`` deletes on demand."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from .conftest import TASKCORE, Stack

pytestmark = pytest.mark.integration

APP = "tests.integration.e2e.retention_handlers:registry"


def wait_for(stack: Stack, query: str, expected: object, *params: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (found := stack.sql(query, *params)) != expected:
        assert time.monotonic() < deadline, f"{query}: {found}, not {expected}"
        time.sleep(0.1)


def status(stack: Stack, task_id: int) -> str:
    return str(stack.sql("SELECT status::text FROM tasks WHERE id = %s", task_id)[0][0])


def test_a_workers_sweeper_deletes_only_old_finished_tasks(stack: Stack) -> None:
    """Tasks of every kind, then some of them made old by moving their times
    back two minutes (the retention is one): only the old finished ones of
    types that go by the setting are deleted, within a few sweeps."""
    stack.env.update(
        {
            "TASKCORE_APP": APP,
            "TASKCORE_RETENTION_S": "60",
            "TASKCORE_SWEEP_INTERVAL_S": "0.5",
            "TASKCORE_CACHE_TTL_S": "1",  # so a read of a deleted task is not answered from Redis
        }
    )
    stack.start_api()
    worker = stack.start_worker()
    done = [stack.submit(f"old-{n}")["id"] for n in range(3)]
    failed = stack.submit("x", type="broken")["id"]
    cancelled = stack.submit("later", delay_s=3600)["id"]
    assert httpx.post(f"{stack.base_url}/tasks/{cancelled}/cancel", timeout=10).status_code == 200
    audit = stack.submit("kept forever", type="audit")["id"]
    brief = stack.submit("kept an hour", type="brief")["id"]
    waiting = stack.submit("in an hour", delay_s=3600)["id"]
    running = stack.submit(600, type="slow")["id"]
    young = stack.submit("young")["id"]
    for task_id in (*done, failed, audit, brief, young):
        stack.wait_final(task_id)
    wait_for(stack, "SELECT status::text FROM tasks WHERE id = %s", [("PROCESSING",)], running)
    assert status(stack, failed) == "FAILED"

    old = [*done, failed, cancelled, audit, brief]
    stack.sql("UPDATE tasks SET finished_at = finished_at - interval '2 minutes' WHERE id = ANY(%s)", old)
    stack.sql(
        "UPDATE tasks SET created_at = created_at - interval '1 day', run_at = run_at - interval '1 day'"
        " WHERE id = ANY(%s)",
        [waiting, running],
    )
    wait_for(stack, "SELECT count(*) FROM tasks WHERE id = ANY(%s)", [(0,)], [*done, failed, cancelled])
    time.sleep(2)  # a few more sweeps: they take nothing else
    kept = {row[0] for row in stack.sql("SELECT id FROM tasks")}
    assert kept == {audit, brief, waiting, running, young}
    assert status(stack, running) == "PROCESSING"
    assert status(stack, waiting) == "PENDING"

    time.sleep(1.5)  # the cache entry of the FAILED one has expired
    assert httpx.get(f"{stack.base_url}/tasks/{failed}", timeout=10).status_code == 404
    listed = httpx.get(f"{stack.base_url}/tasks", params={"status": "FAILED"}, timeout=10).json()
    assert listed["items"] == []
    assert "finished tasks pruned" in worker.output()


def insert_finished(stack: Stack, count: int, task_type: str, age: str) -> None:
    stack.sql(
        "INSERT INTO tasks (type, input, status, attempts, max_attempts, version, created_at, updated_at,"
        "                   run_at, started_at, finished_at, result)"
        " SELECT %s, '\"x\"', 'COMPLETED', 1, 3, 3, t, t, t, t, t, '\"x\"'"
        " FROM (SELECT now() - %s::interval AS t FROM generate_series(1, %s)) AS ages",
        task_type,
        age,
        count,
    )


def prune(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKCORE, "prune", "--app", APP, *args],
        env={**stack.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_taskcore_prune_deletes_on_demand_batch_by_batch(stack: Stack) -> None:
    insert_finished(stack, 1_234, "reverse", "2 days")
    insert_finished(stack, 3, "brief", "2 days")
    insert_finished(stack, 5, "audit", "2 days")
    insert_finished(stack, 7, "reverse", "1 hour")
    stack.sql(  # waiting for nine days: never deleted
        "INSERT INTO tasks (type, input, status, attempts, max_attempts, version, created_at, updated_at,"
        "                   run_at)"
        " VALUES ('reverse', '\"x\"', 'PENDING', 0, 3, 1, now() - interval '9 days',"
        "         now() - interval '9 days', now() - interval '9 days')"
    )

    result = prune(stack, "--older-than", "1d")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "pruned 1237 finished tasks older than 1d; kept forever by their handlers: audit"
    )
    counts = dict(stack.sql("SELECT type || ' ' || status::text, count(*) FROM tasks GROUP BY 1"))
    assert counts == {"reverse COMPLETED": 7, "audit COMPLETED": 5, "reverse PENDING": 1}

    # Without --older-than: each type's retention, here the setting's 30 minutes.
    result = prune(stack, TASKCORE_RETENTION_S="1800")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pruned 7 finished tasks past their retention")
    result = prune(stack, TASKCORE_RETENTION_S="0")
    assert "nothing pruned" not in result.stdout  # a handler (brief) still has a retention of its own
    assert result.stdout.startswith("pruned 0 finished tasks")

    bad = prune(stack, "--older-than", "soon")
    assert bad.returncode == 2
    assert "--older-than must look like 30s, 15m, 1h or 7d" in bad.stderr
