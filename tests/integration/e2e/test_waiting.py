"""Long polls and event streams against real api and worker processes, with
change notifications over Redis pub/sub."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.integration.faults.proxies import TcpProxy

from .conftest import Stack

pytestmark = pytest.mark.integration

DELAY_S = "1.0"


def events_of(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.partition(":")[::2] for line in block.splitlines() if not line.startswith(":"))
        if "event" in fields:
            events.append({name: value.strip() for name, value in fields.items()})
    return events


async def test_many_long_polls_hold_no_database_connection(stack: Stack) -> None:
    # Two pooled connections for twenty waiters: if a waiter held one, the
    # submit below would wait TASKCORE_DATABASE_TIMEOUT_S and get 503. The
    # database re-check is 60 s away, so only notifications can answer.
    stack.start_api(
        TASKCORE_DATABASE_POOL_SIZE="2", TASKCORE_DATABASE_TIMEOUT_S="3", TASKCORE_WAIT_RECHECK_S="60"
    )
    stack.start_worker(TASKCORE_REVERSE_DELAY_S=DELAY_S, TASKCORE_WORKER_CONCURRENCY="32")
    ids = [stack.submit(f"poll-{i}")["id"] for i in range(20)]
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=70) as client:
        started = time.monotonic()
        polls = [asyncio.create_task(client.get(f"/tasks/{i}", params={"wait": 60})) for i in ids]
        await asyncio.sleep(0.3)
        submitted = await client.post("/tasks/", json={"input_data": "meanwhile"})
        assert submitted.status_code == 201
        answers = await asyncio.gather(*polls)
        elapsed = time.monotonic() - started
    assert [a.json()["status"] for a in answers] == ["COMPLETED"] * 20
    assert [a.json()["result"] for a in answers] == [f"poll-{i}"[::-1] for i in range(20)]
    assert elapsed < 30  # woken by notifications: the 60 s re-check never came


async def test_an_event_stream_follows_a_task_and_resumes(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker(TASKCORE_REVERSE_DELAY_S=DELAY_S)
    task_id = stack.submit("stream")["id"]
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        response = await client.get(f"/tasks/{task_id}/events")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = events_of(response.text)
        statuses = [json.loads(e["data"])["status"] for e in events]
        assert statuses[-1] == "COMPLETED"
        assert "PROCESSING" in statuses  # the handler takes a second: its start is seen
        assert [int(e["id"]) for e in events] == sorted({int(e["id"]) for e in events})
        last = events[-1]["id"]
        again = await client.get(f"/tasks/{task_id}/events", headers={"Last-Event-ID": last})
        assert again.status_code == 204
        earlier = await client.get(f"/tasks/{task_id}/events", headers={"Last-Event-ID": "1"})
        assert [e["id"] for e in events_of(earlier.text)] == [last]


async def test_a_long_poll_survives_losing_the_notifications(stack: Stack) -> None:
    """The API's Redis link is cut (no cache, no notifications): the periodic
    database re-check still answers the long poll."""
    with TcpProxy(stack.redis_url) as redis:
        stack.start_api(TASKCORE_REDIS_URL=redis.url, TASKCORE_WAIT_RECHECK_S="0.5")
        stack.start_worker(TASKCORE_REVERSE_DELAY_S=DELAY_S)
        task_id = stack.submit("cut")["id"]
        redis.cut()
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            answer = await client.get(f"/tasks/{task_id}", params={"wait": 20})
        assert answer.json()["status"] == "COMPLETED"
        assert answer.json()["result"] == "tuc"
        redis.restore()
