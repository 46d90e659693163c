"""Transactional enqueue against the real services: an application's own
psycopg transaction writes its row and enqueues a task; real worker
processes run what committed, at once (the commit's NOTIFY, heard by one of
them), and never what rolled back. The listening worker is SIGKILLed and
another takes over; a commit nobody heard is published by the sweeper.

The workers' sweepers wait 300 s before republishing an unconfirmed task
(``TASKCORE_REDISPATCH_GRACE_S``), so a task run within seconds was woken by
the notice, not by the sweeper.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg.rows import dict_row

from taskcore import TaskService
from taskcore.adapters.postgres.transactional import LISTENER_LOCK_KEY
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.lifecycle import open_resources
from taskcore.entrypoints.loading import load_registry
from taskcore.entrypoints.settings import load_settings

from .conftest import Process, Stack

pytestmark = pytest.mark.integration

NOTICE_ONLY = {"TASKCORE_REDISPATCH_GRACE_S": "300"}
PROMPTLY_S = 20.0  # far below the 300 s the sweeper would take; generous for a loaded machine

# pg_locks shows a bigint advisory key as its high and low halves.
LISTENER_LOCK = f"""
SELECT granted FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 1
  AND classid = {LISTENER_LOCK_KEY >> 32} AND objid = {LISTENER_LOCK_KEY & 0xFFFFFFFF}
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY granted DESC
"""


@pytest.fixture
async def service(stack: Stack) -> AsyncIterator[TaskService]:
    """The application's side: taskcore as a library in this process."""
    settings = load_settings(stack.env)
    container = build_container(settings, load_registry(None, reverse_delay_s=settings.reverse_delay_s))
    async with open_resources(container):
        yield container.service()


async def enqueue_order(stack: Stack, service: TaskService, sku: str, *, commit: bool) -> list[int]:
    """The application's transaction (on a connection with its own row
    factory): its order row, the task that packs it and the one that ships
    it once packed."""
    async with await psycopg.AsyncConnection.connect(stack.database_url, row_factory=dict_row) as connection:
        await connection.execute("CREATE TABLE IF NOT EXISTS orders (sku text PRIMARY KEY)")
        await connection.commit()
        try:
            async with connection.transaction():
                await connection.execute("INSERT INTO orders (sku) VALUES (%s)", (sku,))
                pack = await service.submit("reverse", sku, connection=connection)
                ship = await service.submit("reverse", f"{sku}!", after=[pack.id], connection=connection)
                if not commit:
                    raise LookupError("the application changed its mind")
        except LookupError:
            pass
    return [pack.id, ship.id]


def status(stack: Stack, task_id: int) -> str | None:
    rows = stack.sql("SELECT status::text FROM tasks WHERE id = %s", task_id)
    return str(rows[0][0]) if rows else None


async def wait_completed(stack: Stack, task_id: int, within: float) -> float:
    """Seconds until the task COMPLETED."""
    started = time.monotonic()
    while (current := status(stack, task_id)) != "COMPLETED":
        assert time.monotonic() - started < within, f"task {task_id} still {current}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def wait_listener(stack: Stack, worker: Process, waiting: int) -> None:
    """Until a worker holds the listener lock and ``waiting`` others wait for it."""
    deadline = time.monotonic() + 30
    while True:
        rows = stack.sql(LISTENER_LOCK)
        if [granted for (granted,) in rows] == [True] + [False] * waiting:
            return
        assert worker.popen.poll() is None, worker.output()
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.1)


async def test_committed_tasks_run_at_once_rolled_back_ones_never(stack: Stack, service: TaskService) -> None:
    worker = stack.start_worker(**NOTICE_ONLY)
    await wait_listener(stack, worker, waiting=0)

    kept = await enqueue_order(stack, service, "kept", commit=True)
    dropped = await enqueue_order(stack, service, "dropped", commit=False)
    for task_id in kept:  # the step after the first runs once it has
        await wait_completed(stack, task_id, PROMPTLY_S)
    assert stack.sql("SELECT result FROM tasks WHERE id = ANY(%s) ORDER BY id", kept) == [
        ("tpek",),
        ("!tpek",),
    ]
    assert stack.sql("SELECT sku FROM orders ORDER BY sku") == [("kept",)]
    assert [status(stack, task_id) for task_id in dropped] == [None, None], "rolled back: never existed"
    assert "listening for tasks enqueued in callers' transactions" in worker.output()


async def test_another_worker_takes_over_when_the_listener_is_killed(
    stack: Stack, service: TaskService
) -> None:
    first = stack.start_worker(**NOTICE_ONLY)
    await wait_listener(stack, first, waiting=0)
    second = stack.start_worker(**NOTICE_ONLY)
    await wait_listener(stack, second, waiting=1)  # the second waits for the lock

    first.popen.kill()
    first.popen.wait(timeout=30)
    await wait_listener(stack, second, waiting=0)  # its session ended: the second listens

    for task_id in await enqueue_order(stack, service, "after-the-kill", commit=True):
        await wait_completed(stack, task_id, PROMPTLY_S)


async def test_a_commit_while_no_worker_listens_is_run_by_the_sweeper(
    stack: Stack, service: TaskService
) -> None:
    task_id, _ = await enqueue_order(stack, service, "unheard", commit=True)
    assert status(stack, task_id) == "PENDING"
    # Nobody heard the notice; the outbox (dispatched_at NULL) is the sweeper's.
    stack.start_worker(TASKCORE_REDISPATCH_GRACE_S="1", TASKCORE_SWEEP_INTERVAL_S="0.5")
    await wait_completed(stack, task_id, 60)
