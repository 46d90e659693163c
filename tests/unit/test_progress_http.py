"""Progress over HTTP: ``GET /tasks/{id}``, ``progress`` events, long polls left asleep.

On looptime's fake time with the app in the test's event loop (``serving``,
``on_loop_time`` from test_http.py): the handler below reports at exact
moments, and the API's embedded worker stores the reports twice a second.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from taskcore import HandlerRegistry, TaskContext
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from taskcore.model.task import Task

from .test_http import loop_time, on_loop_time, serving
from .test_waiting import parse_events

pytestmark = pytest.mark.looptime

STEPS = [(0.25, "extracting"), (0.5, "transforming"), (0.75, "loading")]


def make_container(**settings: Any) -> Container:
    """``report``: three reports one second apart, then done at 3.5 s."""
    registry = HandlerRegistry()

    @registry.handler
    async def report(_: None, ctx: TaskContext) -> str:
        for fraction, message in STEPS:
            ctx.progress(fraction, message)
            await asyncio.sleep(1)
        await asyncio.sleep(0.5)
        return "loaded"

    return on_loop_time(build_container(load_settings({}, **settings), registry))


async def submit(client: Any) -> int:
    response = await client.post("/tasks/", json={"type": "report", "input_data": None})
    assert response.status_code == 201
    assert (response.json()["progress"], response.json()["progress_message"]) == (None, None)
    task_id: int = response.json()["id"]
    return task_id


async def test_get_shows_the_latest_stored_report_then_all_done() -> None:
    async with serving(create_app(make_container(), embedded_worker=True)) as client:
        task_id = await submit(client)
        await asyncio.sleep(1.7)  # the second report (at 1 s) was stored at 1.5 s
        running = (await client.get(f"/tasks/{task_id}")).json()
        done = (await client.get(f"/tasks/{task_id}", params={"wait": 10})).json()
    assert running["status"] == "PROCESSING"
    assert (running["progress"], running["progress_message"]) == (0.5, "transforming")
    assert running["progress_at"] is not None
    assert done["status"] == "COMPLETED"
    assert (done["progress"], done["progress_message"]) == (1.0, "loading")


async def test_events_send_each_stored_report_as_a_progress_event_in_order() -> None:
    async with serving(create_app(make_container(), embedded_worker=True)) as client:
        task_id = await submit(client)
        response = await client.get(f"/tasks/{task_id}/events")
    events = parse_events(response.text)
    kinds = [event["event"] for event in events]
    data = [msgspec.json.decode(event["data"]) for event in events]
    ids = [int(event["id"]) for event in events]
    assert ids == sorted(set(ids))
    assert kinds[-1] == "status"
    assert data[-1]["status"] == "COMPLETED"
    assert (data[-1]["progress"], data[-1]["progress_message"]) == (1.0, "loading")
    progress = [d for kind, d in zip(kinds, data, strict=True) if kind == "progress"]
    assert [(d["progress"], d["progress_message"]) for d in progress] == STEPS
    assert all(
        set(d) == {"id", "progress", "progress_message", "progress_at", "updated_at"} for d in progress
    )
    statuses = [d["status"] for kind, d in zip(kinds, data, strict=True) if kind == "status"]
    assert statuses in (["PENDING", "PROCESSING", "COMPLETED"], ["PROCESSING", "COMPLETED"])


async def test_a_resumed_stream_starts_with_the_whole_task_and_its_progress() -> None:
    async with serving(create_app(make_container(), embedded_worker=True)) as client:
        task_id = await submit(client)
        await asyncio.sleep(1.7)  # version 2 the claim, 3 and 4 two reports
        response = await client.get(f"/tasks/{task_id}/events", headers={"Last-Event-ID": "2"})
    events = parse_events(response.text)
    first = msgspec.json.decode(events[0]["data"])
    assert events[0]["event"] == "status"  # the client may have missed anything since version 2
    assert int(events[0]["id"]) == 4
    assert (first["status"], first["progress"], first["progress_message"]) == (
        "PROCESSING",
        0.5,
        "transforming",
    )
    assert [e["event"] for e in events[1:]] == ["progress", "status"]


async def test_a_long_poll_is_not_woken_by_progress() -> None:
    container = make_container(progress_interval_s=0.1)
    status_cache = container.status_cache()
    lookup = status_cache.lookup
    reads = 0

    async def counting(task_id: int) -> Task | None:
        nonlocal reads
        reads += 1
        return await lookup(task_id)

    status_cache.lookup = counting  # type: ignore[method-assign]
    async with serving(create_app(container, embedded_worker=True)) as client:
        task_id = await submit(client)
        reads = 0
        started = loop_time()
        done = (await client.get(f"/tasks/{task_id}", params={"wait": 10})).json()
        elapsed = loop_time() - started
    assert done["status"] == "COMPLETED"
    assert elapsed == pytest.approx(3.5, abs=0.05)  # answered as it finished
    # Read when it began and when the task ended: the claim and three stored
    # reports were announced too, and woke nobody.
    assert reads == 2
