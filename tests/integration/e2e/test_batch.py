"""Bulk submit through a real API and worker: a thousand tasks in one request."""

from __future__ import annotations

import time

import httpx
import pytest

from .conftest import Stack
from .test_queues import ready_worker, wait_all

pytestmark = pytest.mark.integration


def test_a_batch_of_1000_is_stored_whole_runs_and_a_bad_item_999_stores_none(stack: Stack) -> None:
    stack.start_api()
    client = httpx.Client(base_url=stack.base_url, timeout=60)
    items = [{"input_data": f"task {n}"} for n in range(1000)]
    for bad in ({"input_data": 999}, {"input_data": "nul \u0000"}, {"type": "nope", "input_data": "x"}):
        refused = client.post("/tasks/batch", json={"items": [*items[:999], bad]})
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"].startswith("items[999]: "), refused.json()
        assert stack.sql("SELECT count(*) FROM tasks") == [(0,)]  # none of the 999 good ones either
    started = time.monotonic()
    created = client.post("/tasks/batch", json={"items": items})
    submit_s = time.monotonic() - started
    assert created.status_code == 201, created.text
    ids = [task["id"] for task in created.json()["items"]]
    assert len(set(ids)) == 1000
    worker = ready_worker(stack)
    wait_all(stack, ids, timeout=120)
    results = dict(stack.sql("SELECT id, result FROM tasks"))
    assert [results[task_id] for task_id in ids] == [f"task {n}"[::-1] for n in range(1000)]
    assert worker.stop() == 0, worker.output()
    client.close()
    print(f"\n1,000 tasks in one POST /tasks/batch: {submit_s * 1000:.0f} ms")
