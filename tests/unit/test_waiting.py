"""Waiting without polling: change notifications, long polls and event streams,
on the memory adapters (the embedded system of ``taskcore dev``).

Every test runs on looptime's fake time, the app in the test's event loop
(``serving``) and the core on the loop's clock (``on_loop_time``): the handler's
delay, the re-checks and the waits' deadlines are exact, however busy the machine.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from taskcore import HandlerRegistry, register_builtins
from taskcore.adapters.memory import MemoryCache, MemoryChangeFeed, MemoryTasks
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from taskcore.model.changes import TaskChange, decode_changes, encode_changes
from taskcore.model.status import TaskStatus
from taskcore.model.task import NewTask, Task
from taskcore.submit.service import TaskService
from taskcore.submit.waiting import ChangeListener
from taskcore.transitions.announcer import ChangeAnnouncer

from .conftest import ManualClock
from .test_http import Client, eventually, loop_time, on_loop_time, serving

pytestmark = pytest.mark.looptime

DELAY_S = 0.3  # how long the reverse handler takes


def a_task(task_id: int, version: int = 1) -> Task:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    new = NewTask(type="reverse", input="x", max_attempts=3, run_at=now, created_at=now)
    return msgspec.structs.replace(Task.created(task_id, new), version=version)


def test_changes_travel_as_compact_json_and_garbage_decodes_to_nothing() -> None:
    changes = [TaskChange(7, 3, TaskStatus.COMPLETED), TaskChange(8, 1, TaskStatus.PENDING)]
    body = encode_changes(changes)
    assert body == b'[[7,3,"COMPLETED"],[8,1,"PENDING"]]'
    assert decode_changes(body) == changes
    assert decode_changes(b"not json") == []
    assert decode_changes(b'[[7,"x","COMPLETED"]]') == []


async def test_the_announcer_coalesces_and_never_makes_callers_wait() -> None:
    feed = MemoryChangeFeed()
    calls: list[int] = []
    original = feed.announce

    async def counting(changes: Any) -> None:
        calls.append(len(changes))
        await asyncio.sleep(0.01)  # a round trip, during which more changes queue up
        await original(changes)

    feed.announce = counting  # type: ignore[method-assign]
    announcer = ChangeAnnouncer(feed)
    for task_id in range(1, 4):
        announcer.announce(a_task(task_id))  # synchronous: no caller waits for the feed
    await eventually(lambda: calls == [3])  # the first round trip is under way
    for task_id in range(4, 9):
        announcer.announce(a_task(task_id))
    await announcer.aclose()
    assert calls == [3, 5]
    assert [c.id for c in feed.announced] == list(range(1, 9))


async def test_a_feed_outage_loses_notifications_quietly() -> None:
    feed = MemoryChangeFeed()
    feed.available = False
    announcer = ChangeAnnouncer(feed)
    announcer.announce(a_task(1))
    await announcer.aclose()  # no error reaches the caller
    assert feed.announced == []


async def test_the_listener_resubscribes_after_losing_the_feed() -> None:
    feed = MemoryChangeFeed()
    listener = ChangeListener(feed, resubscribe_s=0.01)
    running = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.subscribed.wait(), 1)
        with listener.watching(5) as signal:
            await feed.announce(
                [TaskChange(5, 2, TaskStatus.PROCESSING), TaskChange(6, 9, TaskStatus.FAILED)]
            )
            await asyncio.wait_for(signal.event.wait(), 1)
            assert signal.announced == 2
            feed.available = False
            await eventually(lambda: not listener.subscribed.is_set())  # it noticed the loss
            assert feed.subscribers == 0
            await asyncio.sleep(0.05)  # re-subscribing after 0.01, 0.02 s: refused while it is down
            assert not listener.subscribed.is_set()
            feed.available = True
            await asyncio.wait_for(listener.subscribed.wait(), 1)
            assert feed.subscribers == 1
            signal.event.clear()
            await feed.announce([TaskChange(5, 3, TaskStatus.COMPLETED)])
            await asyncio.wait_for(signal.event.wait(), 1)
            assert signal.announced == 3
        assert listener.waiting == 0
    finally:
        running.cancel()


def make_container(**settings: Any) -> Container:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=DELAY_S)
    return on_loop_time(build_container(load_settings({}, **settings), registry))


@pytest.fixture
def container() -> Container:
    return make_container()


async def submit(client: Client, text: str = "hello") -> int:
    response = await client.post("/tasks/", json={"input_data": text})
    assert response.status_code == 201
    task_id: int = response.json()["id"]
    return task_id


async def test_a_long_poll_answers_when_the_task_finishes(container: Container) -> None:
    async with serving(create_app(container, embedded_worker=True)) as client:
        task_id = await submit(client)
        started = loop_time()
        response = await client.get(f"/tasks/{task_id}", params={"wait": 10})
        elapsed = loop_time() - started
    assert response.status_code == 200
    assert response.json()["status"] == "COMPLETED"
    assert response.json()["result"] == "olleh"
    # Woken by the notification as the handler finished, not by the 5 s re-check.
    assert DELAY_S <= elapsed < DELAY_S + 0.1
    assert container.listener().waiting == 0


async def test_a_long_poll_gives_the_current_state_when_the_wait_ends(container: Container) -> None:
    async with serving(create_app(container, embedded_worker=True)) as client:
        created = await client.post("/tasks/", json={"input_data": "later", "delay_s": 30})
        started = loop_time()
        response = await client.get(f"/tasks/{created.json()['id']}", params={"wait": 0.3})
        elapsed = loop_time() - started
    assert elapsed == pytest.approx(0.3, abs=0.01)
    assert response.json()["status"] == "PENDING"


async def test_a_long_poll_is_cut_to_the_configured_maximum() -> None:
    async with serving(create_app(make_container(wait_max_s=0.2), embedded_worker=False)) as client:
        task_id = await submit(client)  # no worker: it stays PENDING
        started = loop_time()
        response = await client.get(f"/tasks/{task_id}", params={"wait": 60})
        elapsed = loop_time() - started
    assert elapsed == pytest.approx(0.2, abs=0.01)
    assert response.json()["status"] == "PENDING"


@pytest.mark.parametrize("wait", ["-1", "61", "soon"])
async def test_bad_waits_are_rejected(container: Container, wait: str) -> None:
    async with serving(create_app(container, embedded_worker=True)) as client:
        task_id = await submit(client)
        response = await client.get(f"/tasks/{task_id}", params={"wait": wait})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_lost_notifications_are_made_up_for_by_the_database_recheck() -> None:
    recheck_s = 0.2
    container = make_container(wait_recheck_s=recheck_s)
    feed = container.changes()
    assert isinstance(feed, MemoryChangeFeed)
    async with serving(create_app(container, embedded_worker=True)) as client:
        await asyncio.wait_for(container.listener().subscribed.wait(), 1)
        feed.available = False  # every notification from now on is lost
        task_id = await submit(client)
        started = loop_time()
        response = await client.get(f"/tasks/{task_id}", params={"wait": 10})
        elapsed = loop_time() - started
    assert response.json()["status"] == "COMPLETED"
    # Done at DELAY_S, unannounced: the first re-check after that finds it.
    assert DELAY_S <= elapsed <= DELAY_S + recheck_s + 0.01


async def test_a_waiting_request_reads_nothing_until_told(container: Container) -> None:
    """No polling: while the task is not announced, a waiter reads only on the re-check."""
    tasks = container.tasks()
    assert isinstance(tasks, MemoryTasks)
    reads = 0
    original = tasks.get

    async def counting(task_id: int, *, fresh: bool = False) -> Task | None:
        nonlocal reads
        reads += 1
        return await original(task_id, fresh=fresh)

    tasks.get = counting  # type: ignore[method-assign]
    async with serving(create_app(container, embedded_worker=False)) as client:
        task_id = await submit(client)
        reads = 0
        started = loop_time()
        response = await client.get(f"/tasks/{task_id}", params={"wait": 1})  # re-check every 5 s
        elapsed = loop_time() - started
    assert response.json()["status"] == "PENDING"
    assert elapsed == pytest.approx(1, abs=0.01)  # it did wait the whole second...
    assert reads == 0  # ...served by the cache once, then only a notification would have woken it


def parse_events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        if "event" in fields:
            events.append(fields)
    return events


async def test_events_stream_each_status_change_then_end(container: Container) -> None:
    async with serving(create_app(container, embedded_worker=True)) as client:
        task_id = await submit(client)
        response = await client.get(f"/tasks/{task_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    statuses = [msgspec.json.decode(e["data"])["status"] for e in events]
    assert statuses[-1] == "COMPLETED"
    assert statuses in (["PENDING", "PROCESSING", "COMPLETED"], ["PROCESSING", "COMPLETED"])
    versions = [int(e["id"]) for e in events]
    assert versions == sorted(set(versions))
    assert msgspec.json.decode(events[-1]["data"])["result"] == "olleh"


async def test_events_resume_after_the_last_event_id(container: Container) -> None:
    async with serving(create_app(container, embedded_worker=True)) as client:
        task_id = await submit(client)
        done = (await client.get(f"/tasks/{task_id}", params={"wait": 10})).json()
        assert done["status"] == "COMPLETED"
        resumed = await client.get(f"/tasks/{task_id}/events", headers={"Last-Event-ID": "1"})
        # Already seen the final state: 204 tells an EventSource to stop reconnecting.
        finished = await client.get(f"/tasks/{task_id}/events", headers={"Last-Event-ID": "3"})
    events = parse_events(resumed.text)
    assert [int(e["id"]) for e in events] == [3]  # only what came after version 1: the final state
    assert finished.status_code == 204


async def test_events_for_a_missing_task_are_404_problem_json(container: Container) -> None:
    async with serving(create_app(container, embedded_worker=True)) as client:
        response = await client.get("/tasks/999/events")
        bad = await client.get("/tasks/1/events", headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert bad.status_code == 422


async def test_a_cached_state_older_than_the_announced_one_is_passed_over(
    service: TaskService, tasks: MemoryTasks, cache: MemoryCache, clock: ManualClock
) -> None:
    """The cache write of a transition failed but its notification arrived:
    the waiter, told of version 2, must not settle for the cached version 1."""
    task = await service.submit("reverse", "abc")
    claimed = await tasks.claim(task.id, clock.now(), timedelta(seconds=30))  # no cache write
    assert claimed is not None
    assert claimed.version == 2
    assert (await service.get(task.id)).version == 1  # what a plain read serves
    assert (await service.get(task.id, min_version=2)).status is TaskStatus.PROCESSING
    assert cache.entries[task.id][0].version == 2  # and the cache is mended
    assert (await service.get(task.id, from_database=True)).version == 2


async def test_keep_alives_are_comments_with_no_data() -> None:
    """An empty ``data:`` line would make a browser dispatch an empty message."""
    async with serving(create_app(make_container(wait_recheck_s=0.05), embedded_worker=True)) as client:
        task_id = await submit(client)
        text = (await client.get(f"/tasks/{task_id}/events")).text
    lines = text.replace("\r\n", "\n").splitlines()
    # The re-checks at 0.05 ... 0.25 s found nothing new while the handler ran: a keep-alive each.
    assert lines.count(": waiting") == round(DELAY_S / 0.05) - 1
    assert all(msgspec.json.decode(line[len("data: ") :]) for line in lines if line.startswith("data:"))
