"""Progress through real api and worker processes: PostgreSQL, Redis and RabbitMQ.

A handler reports stage after stage; a client follows the task's event
stream and reads it with ``GET`` at each ``progress`` event, and only then
lets the handler go on (``progress_handlers.py``), so every report is seen,
in order, whatever the machine's load.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Stack
from .test_queues import ready_worker

pytestmark = pytest.mark.integration

APP = "tests.integration.e2e.progress_handlers:registry"
STAGES = [[0.1, "extracting"], [0.4, "transforming"], [0.7, "loading"], [0.9, "indexing"]]


async def events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The stream's events as they arrive (comments and ``retry`` skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if "event" in fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.strip()


@pytest.mark.parametrize("handler", ["stages", "stages_sync"])
async def test_every_report_is_seen_by_get_and_as_progress_events_in_order(
    stack: Stack, tmp_path: Path, handler: str
) -> None:
    stack.env["TASKCORE_APP"] = APP
    stack.start_api()
    ready_worker(stack)
    task = stack.submit({"dir": str(tmp_path), "stages": STAGES}, type=handler)
    seen: list[tuple[str, Any]] = []
    read: list[tuple[float, str]] = []
    async with (
        httpx.AsyncClient(base_url=stack.base_url, timeout=90) as client,
        client.stream("GET", f"/tasks/{task['id']}/events") as response,
    ):
        assert response.status_code == 200
        async for event in events(response):
            data = json.loads(event["data"])
            seen.append((event["event"], data))
            if event["event"] == "progress":
                view = (await client.get(f"/tasks/{task['id']}")).json()
                assert view["status"] == "PROCESSING"
                read.append((view["progress"], view["progress_message"]))
                (tmp_path / f"seen-{len(read) - 1}").touch()  # the handler goes on
    progress = [(data["progress"], data["progress_message"]) for kind, data in seen if kind == "progress"]
    assert progress == [tuple(stage) for stage in STAGES]
    assert read == progress  # GET showed each one too (the cache, filled as it was stored)
    kinds = [kind for kind, _ in seen]
    assert kinds[:-1].count("status") <= 2  # PENDING and PROCESSING, before the reports
    assert kinds[-1] == "status"
    final = seen[-1][1]
    assert (final["status"], final["result"]) == ("COMPLETED", len(STAGES))
    assert (final["progress"], final["progress_message"]) == (1.0, "indexing")
    ((version, stored, message),) = stack.sql(
        "SELECT version, progress, progress_message FROM tasks WHERE id = %s", task["id"]
    )
    assert (stored, message) == (1.0, "indexing")
    assert version == 3 + len(STAGES)  # the claim, one write per report, the verdict


def test_a_cancel_while_a_handler_reports_stops_it_and_nothing_is_written_after(stack: Stack) -> None:
    stack.env["TASKCORE_APP"] = APP
    stack.start_api()
    worker = ready_worker(stack)
    task_id = stack.submit(None, type="endless")["id"]
    deadline = time.monotonic() + 30
    while (stack.get(task_id)["progress"] or 0) == 0:  # the first reports are stored
        assert time.monotonic() < deadline, stack.get(task_id)
        time.sleep(0.05)
    time.sleep(1)
    cancelled = httpx.post(f"{stack.base_url}/tasks/{task_id}/cancel", timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"
    query = "SELECT status::text, version, progress, progress_message FROM tasks WHERE id = %s"
    (row,) = stack.sql(query, task_id)
    deadline = time.monotonic() + 30
    while "was cancelled or taken over" not in worker.output():
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    time.sleep(1)  # two more intervals in which the handler, had it run on, would have written
    assert stack.sql(query, task_id) == [row]
    assert row[0] == "CANCELLED"
    assert row[3] == cancelled.json()["progress_message"]
    assert stack.get(task_id)["status"] == "CANCELLED"  # the cache did not move back either
