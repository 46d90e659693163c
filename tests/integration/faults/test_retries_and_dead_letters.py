"""Handlers that fail, hang or are cancelled, and messages that are not what they seem.

Real ``api`` and ``worker`` processes with the misbehaving handlers of
``handlers.py``; handlers record each execution, so ``runs()`` says how often
a handler really ran. What must hold: failures retry up to ``max_attempts``
and then leave a FAILED task that can be listed and re-queued, a message that
is not a task goes to ``<queue>.dlq`` with its reason and never stops the
worker, a duplicate message never runs a handler twice, and a cancelled task
never runs (PENDING) or is stopped with its result discarded (PROCESSING).
"""

from __future__ import annotations

import ast
import asyncio
import re
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
import pytest

from taskcore.adapters.rabbitmq.topology import REASON_HEADER
from tests.integration.e2e.conftest import Process, Stack

from .handlers import runs

pytestmark = [pytest.mark.integration]

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(interval)


def wait_log(process: Process, pattern: str, timeout: float = 30) -> re.Match[str]:
    def seen() -> re.Match[str] | None:
        assert process.popen.poll() is None, f"{process.name} exited:\n{process.output()}"
        return re.search(pattern, process.output())

    return wait_for(seen, timeout, f"{pattern!r} in the {process.name} log")


def start_worker(stack: Stack, **env: str) -> Process:
    worker = stack.start_worker(**env)
    wait_log(worker, "worker consuming")
    return worker


def stop_worker(worker: Process) -> dict[str, int]:
    """SIGTERM, exit 0, and the outcome counts the worker logs as it stops."""
    assert worker.stop(signal.SIGTERM, timeout=30) == 0, worker.output()
    match = re.search(r"worker stopped: (\{.*\})", worker.output())
    assert match, worker.output()
    outcomes: dict[str, int] = ast.literal_eval(match.group(1))
    return outcomes


# -- the broker, straight (the test's own connection, never the adapter's) ------------


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a fresh loop in another thread (the test itself is synchronous)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, make()).result(60)  # type: ignore[arg-type]


def publish_raw(stack: Stack, *bodies: bytes) -> None:
    """Persistent messages straight onto this test's work queue, confirmed and routed."""

    async def publish() -> None:
        async with await aio_pika.connect(stack.env["TASKCORE_AMQP_URL"]) as connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            for body in bodies:
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await channel.default_exchange.publish(message, routing_key=stack.queue_name, mandatory=True)

    run_async(publish)


def take_all(stack: Stack, queue_name: str) -> list[tuple[bytes, str | None]]:
    """Remove and return every ready message on ``queue_name``, with its reason header."""

    async def take() -> list[tuple[bytes, str | None]]:
        taken: list[tuple[bytes, str | None]] = []
        async with await aio_pika.connect(stack.env["TASKCORE_AMQP_URL"]) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_name, passive=True)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                reason = message.headers.get(REASON_HEADER)
                text = reason.decode() if isinstance(reason, bytes) else reason
                taken.append((message.body, None if text is None else str(text)))
        return taken

    return run_async(take)


def depth(stack: Stack, queue_name: str) -> int:
    async def count() -> int:
        async with await aio_pika.connect(stack.env["TASKCORE_AMQP_URL"]) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_name, passive=True)
            return queue.declaration_result.message_count or 0

    return run_async(count)


def dead_letter_queue(stack: Stack) -> str:
    return f"{stack.queue_name}.dlq"


def post(stack: Stack, path: str) -> httpx.Response:
    return httpx.post(f"{stack.base_url}{path}", timeout=10)


def assert_task(task: dict[str, Any], **expected: Any) -> None:
    assert {name: task[name] for name in expected} == expected, task


# -- retries ---------------------------------------------------------------------------


def test_a_handler_that_fails_twice_then_succeeds_completes_on_its_third_attempt(
    fault_stack: Stack, fault_dir: Path
) -> None:
    stack = fault_stack
    stack.start_api()
    worker = start_worker(stack)
    task_id = stack.submit({"key": "twice", "failures": 2}, type="flaky")["id"]
    done = stack.wait_final(task_id)
    # The last attempt's success clears the error of the earlier ones.
    assert_task(done, status="COMPLETED", result="ok twice", error=None, attempts=3, max_attempts=3)
    assert done["finished_at"] is not None
    assert len(runs(fault_dir, "twice")) == 3
    for attempt in (1, 2):
        wait_log(worker, rf"task {task_id} attempt {attempt} failed, retrying: RuntimeError: planned failure")
    # Only FAILED or CANCELLED tasks can be re-queued.
    again = post(stack, f"/tasks/{task_id}/retry")
    assert again.status_code == 409, again.text
    assert again.headers["content-type"] == "application/problem+json"
    assert_task(stack.get(task_id), status="COMPLETED", result="ok twice", attempts=3)
    assert len(runs(fault_dir, "twice")) == 3


def test_a_handler_that_always_fails_ends_failed_and_can_be_requeued(
    fault_stack: Stack, fault_dir: Path
) -> None:
    stack = fault_stack
    stack.start_api()
    worker = start_worker(stack)
    task_id = stack.submit("doomed", type="always_fails")["id"]
    failed = stack.wait_final(task_id)
    assert_task(
        failed,
        status="FAILED",
        result=None,
        error="RuntimeError: doomed always fails",
        attempts=3,
        max_attempts=3,
    )
    assert failed["finished_at"] is not None
    assert len(runs(fault_dir, "doomed")) == 3

    listed = httpx.get(f"{stack.base_url}/tasks", params={"status": "FAILED"}, timeout=10)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert page["next_cursor"] is None
    assert [item["id"] for item in page["items"]] == [task_id]
    assert_task(page["items"][0], status="FAILED", error="RuntimeError: doomed always fails", attempts=3)

    requeued = post(stack, f"/tasks/{task_id}/retry")
    assert requeued.status_code == 200, requeued.text
    assert_task(requeued.json(), status="PENDING", attempts=0, error=None, result=None, finished_at=None)
    # It runs again, three more attempts, and fails again.
    wait_for(lambda: len(runs(fault_dir, "doomed")) == 6, 30, "three more runs")
    failed_again = stack.wait_final(task_id)
    assert_task(
        failed_again, status="FAILED", result=None, error="RuntimeError: doomed always fails", attempts=3
    )
    assert failed_again["finished_at"] is not None
    assert failed_again["finished_at"] > failed["finished_at"]
    # Nothing runs after the last attempt. A retry scheduled by mistake would wait in a delay
    # bucket (its handler's back-off is at most 0.5 s): a task delayed longer, submitted
    # now, arrives after it, and the worker's drain at its stop counts whatever it received.
    sentinel = stack.submit("sentinel", type="record", delay_s=1.0)["id"]
    assert_task(stack.wait_final(sentinel), status="COMPLETED", result="lenitnes", attempts=1)
    assert stop_worker(worker) == {"retry_scheduled": 4, "failed": 2, "completed": 1}
    assert len(runs(fault_dir, "doomed")) == 6
    listed = httpx.get(f"{stack.base_url}/tasks", params={"status": "FAILED"}, timeout=10).json()
    assert [item["id"] for item in listed["items"]] == [task_id]


def test_a_handler_over_its_timeout_is_retried(fault_stack: Stack, fault_dir: Path) -> None:
    stack = fault_stack
    stack.start_api()
    worker = start_worker(stack)
    task_id = stack.submit("late", type="slow_then_fast")["id"]
    done = stack.wait_final(task_id)
    assert_task(done, status="COMPLETED", result="fast late", error=None, attempts=2)
    assert len(runs(fault_dir, "late")) == 2
    wait_log(worker, rf"task {task_id} attempt 1 failed, retrying: timed out after 0.5 s")


# -- messages that are not tasks, and duplicates ---------------------------------------

POISON = {
    b"not-a-number": "not a task id: b'not-a-number'",
    b"": "not a task id: b''",
    b"12345678901234567890": "not a task id: b'12345678901234567890'",  # 20 digits: no bigint
    b"999999": "no task with id 999999",
    b"9223372036854775807": "no task with id 9223372036854775807",  # the largest bigint
    b"9999999999999999999": "no task with id 9999999999999999999",  # 19 digits, past bigint
}


def test_poison_messages_go_to_the_dead_letter_queue_and_the_worker_keeps_going(
    fault_stack: Stack, fault_dir: Path
) -> None:
    stack = fault_stack
    stack.start_api()
    worker = start_worker(stack)
    publish_raw(stack, *POISON)

    dead: list[tuple[bytes, str | None]] = []

    def all_dead_lettered() -> bool:
        dead.extend(take_all(stack, dead_letter_queue(stack)))
        return len(dead) >= len(POISON)

    wait_for(all_dead_lettered, 20, "every poison message in the dead-letter queue", interval=0.3)
    assert dict(dead) == POISON
    assert len(dead) == len(POISON)

    task_id = stack.submit("still working", type="record")["id"]
    assert_task(stack.wait_final(task_id), status="COMPLETED", result="gnikrow llits", attempts=1)
    assert len(runs(fault_dir, "still working")) == 1
    # No crash loop: stopped (its drain settles what it holds), the worker dealt with each
    # message once; nothing went back to the work queue, nothing was dead-lettered twice.
    outcomes = stop_worker(worker)
    assert outcomes == {"dead_lettered": len(POISON), "completed": 1}
    assert depth(stack, stack.queue_name) == 0
    assert take_all(stack, dead_letter_queue(stack)) == []
    assert "unexpected error processing a delivery" not in worker.output()


def test_a_task_delivered_many_times_runs_once(fault_stack: Stack, fault_dir: Path) -> None:
    stack = fault_stack
    stack.start_api()
    task_id = stack.submit("dup", type="record")["id"]
    body = str(task_id).encode()
    publish_raw(stack, body, body)  # three messages for one task, taken at once by the worker
    assert depth(stack, stack.queue_name) == 3
    worker = start_worker(stack)
    done = stack.wait_final(task_id)
    assert_task(done, status="COMPLETED", result="pud", error=None, attempts=1)

    publish_raw(stack, body, body)  # and two more once it is finished
    wait_for(lambda: depth(stack, stack.queue_name) == 0, 20, "the duplicates to be taken", interval=0.3)
    sentinel = stack.submit("sentinel", type="record")["id"]
    assert_task(stack.wait_final(sentinel), status="COMPLETED", result="lenitnes", attempts=1)
    assert stop_worker(worker) == {"completed": 2, "skipped": 4}

    assert len(runs(fault_dir, "dup")) == 1
    assert_task(stack.get(task_id), status="COMPLETED", result="pud", error=None, attempts=1)
    # One claim, one verdict: the row was written exactly twice after its insert.
    assert stack.sql("SELECT status::text, result, version FROM tasks WHERE id = %s", task_id) == [
        ("COMPLETED", "pud", 3)
    ]
    assert take_all(stack, dead_letter_queue(stack)) == []


# -- cancel ---------------------------------------------------------------------------


def test_a_cancelled_pending_task_never_runs(fault_stack: Stack, fault_dir: Path) -> None:
    stack = fault_stack
    stack.start_api()  # no worker yet: the task stays PENDING
    task_id = stack.submit("never", type="record")["id"]
    cancelled = post(stack, f"/tasks/{task_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert_task(cancelled.json(), status="CANCELLED", result=None, attempts=0)
    assert cancelled.json()["finished_at"] is not None
    assert_task(stack.get(task_id), status="CANCELLED", result=None, attempts=0)
    again = post(stack, f"/tasks/{task_id}/cancel")
    assert again.status_code == 409, again.text

    worker = start_worker(stack)
    wait_for(lambda: depth(stack, stack.queue_name) == 0, 20, "its message to be taken", interval=0.3)
    sentinel = stack.submit("sentinel", type="record")["id"]
    assert_task(stack.wait_final(sentinel), status="COMPLETED", result="lenitnes", attempts=1)
    assert stop_worker(worker) == {"skipped": 1, "completed": 1}
    assert runs(fault_dir, "never") == []
    assert_task(stack.get(task_id), status="CANCELLED", result=None, error=None, attempts=0)
    assert stack.sql("SELECT status::text, result, attempts FROM tasks WHERE id = %s", task_id) == [
        ("CANCELLED", None, 0)
    ]


def test_cancelling_a_running_task_stops_it_and_discards_its_result(
    fault_stack: Stack, fault_dir: Path
) -> None:
    stack = fault_stack
    stack.start_api()
    worker = start_worker(stack)
    task_id = stack.submit({"key": "long", "seconds": 20}, type="sleep_async")["id"]
    wait_for(lambda: runs(fault_dir, "long"), 20, "the handler to start")
    assert stack.get(task_id)["status"] == "PROCESSING"

    cancelled_at = time.monotonic()
    cancelled = post(stack, f"/tasks/{task_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert_task(cancelled.json(), status="CANCELLED", result=None, attempts=1)
    assert_task(stack.get(task_id), status="CANCELLED", result=None, attempts=1)  # at once
    # The heartbeat (every lease / 3 = 1 s) finds the task gone and stops the handler.
    wait_log(worker, rf"task {task_id} was cancelled or taken over while attempt 1 ran", timeout=10)
    stopped_s = time.monotonic() - cancelled_at
    assert stopped_s < 8, stopped_s

    # The worker is free again, and its stop does not wait for a 20 s handler.
    sentinel = stack.submit("sentinel", type="record")["id"]
    assert_task(stack.wait_final(sentinel), status="COMPLETED", result="lenitnes", attempts=1)
    stopping = time.monotonic()
    assert stop_worker(worker) == {"superseded": 1, "completed": 1}
    assert time.monotonic() - stopping < 8

    assert len(runs(fault_dir, "long")) == 1
    assert_task(stack.get(task_id), status="CANCELLED", result=None, error=None, attempts=1)
    assert stack.sql("SELECT status::text, result, lease_until FROM tasks WHERE id = %s", task_id) == [
        ("CANCELLED", None, None)
    ]
    print(f"\nrunning task cancelled: handler stopped {stopped_s:.1f} s after the cancel")
