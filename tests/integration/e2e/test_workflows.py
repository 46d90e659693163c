"""Workflows through real API and worker processes, shown from the rows."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from .conftest import Stack
from .test_queues import ready_worker

pytestmark = pytest.mark.integration

APP = "tests.integration.e2e.workflow_handlers:registry"


def diamond(middle: str = "step") -> dict[str, Any]:
    return {
        "name": "diamond",
        "steps": [
            {"name": "a", "type": "step", "input_data": "a"},
            {"name": "b", "type": middle, "input_data": "b", "after": ["a"]},
            {"name": "c", "type": "step", "input_data": "c", "after": ["a"]},
            {"name": "d", "type": "step", "input_data": "d", "after": ["b", "c"]},
        ],
    }


def run(stack: Stack, body: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    created = httpx.post(f"{stack.base_url}/workflows", json=body, timeout=10)
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = httpx.get(f"{stack.base_url}/workflows/{workflow_id}", timeout=10).json()
        if found["status"] != "RUNNING":
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def test_a_diamond_runs_in_dependency_order_over_two_workers_and_d_reads_b_and_c(stack: Stack) -> None:
    stack.env["TASKCORE_APP"] = APP
    stack.start_api()
    workers = [ready_worker(stack), ready_worker(stack)]
    done = run(stack, diamond())
    assert done["status"] == "COMPLETED"
    steps = {step["step"]: step for step in done["steps"]}
    assert steps["d"]["result"] == {
        "name": "d",
        "read": {
            "b": {"name": "b", "read": {"a": {"name": "a", "read": {}}}},
            "c": {"name": "c", "read": {"a": {"name": "a", "read": {}}}},
        },
    }
    rows = {
        step: (started, finished)
        for step, started, finished in stack.sql("SELECT step, started_at, finished_at FROM tasks")
    }
    assert rows["b"][0] >= rows["a"][1]
    assert rows["c"][0] >= rows["a"][1]
    assert rows["d"][0] >= max(rows["b"][1], rows["c"][1])
    assert stack.sql("SELECT max(attempts) FROM tasks") == [(1,)]
    for worker in workers:
        assert worker.stop() == 0, worker.output()


def test_a_failing_step_cancels_the_step_after_it_with_a_reason(stack: Stack) -> None:
    stack.env["TASKCORE_APP"] = APP
    stack.start_api()
    worker = ready_worker(stack)
    done = run(stack, diamond(middle="boom"))
    steps = {step["step"]: step for step in done["steps"]}
    assert done["status"] == "FAILED"
    assert [steps[name]["status"] for name in "abcd"] == ["COMPLETED", "FAILED", "COMPLETED", "CANCELLED"]
    assert steps["d"]["error"] == "cancelled: step 'b', which it runs after, is FAILED"
    assert steps["d"]["attempts"] == 0  # it never ran
    assert worker.stop() == 0, worker.output()
