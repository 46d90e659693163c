"""Priorities through the real stack: the broker starts the highest waiting task first."""

from __future__ import annotations

import pytest

from .conftest import Stack

pytestmark = pytest.mark.integration

BACKLOG = 8


def test_a_priority_9_task_behind_a_backlog_of_priority_0_ones_starts_first(stack: Stack) -> None:
    stack.start_api()
    backlog = [stack.submit(f"low {n}")["id"] for n in range(BACKLOG)]  # nothing consumes yet
    urgent = stack.submit("urgent", priority=9)
    assert urgent["priority"] == 9
    assert stack.get(backlog[0])["priority"] == 0
    stack.start_worker(TASKCORE_WORKER_CONCURRENCY="1")
    for task_id in [*backlog, urgent["id"]]:
        assert stack.wait_final(task_id)["status"] == "COMPLETED"
    started = stack.sql("SELECT id, priority FROM tasks ORDER BY started_at, id")
    assert started == [(urgent["id"], 9), *[(task_id, 0) for task_id in backlog]]
