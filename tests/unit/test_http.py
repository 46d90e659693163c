"""The HTTP contract, on the memory adapters, with the app running in the test's event loop.

Litestar's ``AsyncTestClient`` serves the app (its lifespan, so the embedded
worker, and every request) on an event loop of its own in a portal thread, on
real time. ``serving`` runs the lifespan and the requests here instead
(``httpx.ASGITransport``: no socket), so under ``looptime`` the worker, the
retries, the schedules and the client's polling all run on the same fake time,
and ``on_loop_time`` gives the container the clock that agrees with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from dependency_injector import providers
from litestar import Litestar

from taskcore import HandlerRegistry, register_builtins
from taskcore.adapters.memory import MemoryDatabase, MemoryQueue, MemoryTasks
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from taskcore.model.task import Task
from tests.core import LoopClock

pytestmark = pytest.mark.looptime

PROBLEM = "application/problem+json"

Client = httpx.AsyncClient


@asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[Client]:
    """A client for ``app``, whose lifespan runs for the block, all in this event loop.

    The lifespan runs in a task of its own, as a server runs it, so that it
    is entered and left in one task even when a fixture's setup and teardown
    run in different ones. (Under looptime, enter it in the test itself: a
    fixture's timers are set on real time, which the fake time never reaches.)
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    running = asyncio.create_task(lifespan(), name="lifespan")
    startup = asyncio.ensure_future(started.wait())
    await asyncio.wait({running, startup}, return_when=asyncio.FIRST_COMPLETED)
    startup.cancel()
    if running.done():
        running.result()  # the startup failed: raise its error
        raise AssertionError("the lifespan ended before the app started")
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver.local", follow_redirects=True
        ) as client:
            yield client
    finally:
        stop.set()
        await running


def on_loop_time(container: Container) -> Container:
    """The container's clock (and the memory queue's, for delayed messages, and
    the dashboard's for how long it keeps a queue reading) is the event loop's:
    under looptime, what the core sees as now is the fake time."""
    clock = LoopClock()
    container.clock.override(providers.Object(clock))
    container.queue.override(providers.Object(MemoryQueue(clock)))
    container.monotonic.override(providers.Object(loop_time))
    return container


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    """Until ``check()`` holds, polling on the loop's time (fake under looptime)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def loop_time() -> float:
    return asyncio.get_running_loop().time()


# -- the API under test ----------------------------------------------------------------


@pytest.fixture
def container() -> Container:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0.05)

    @registry.handler
    async def explode(_: str) -> None:
        raise RuntimeError("handler bug")

    settings = load_settings({}, max_body_bytes=4096, retry_base_s=0.01, retry_cap_s=0.02)
    return on_loop_time(build_container(settings, registry))


@pytest.fixture
def app(container: Container) -> Litestar:
    return create_app(container, embedded_worker=True)


async def wait_for_status(client: Client, task_id: int, status: str) -> dict[str, object]:
    for _ in range(200):
        body: dict[str, object] = (await client.get(f"/tasks/{task_id}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"task {task_id} never reached {status}")


def database(container: Container) -> MemoryDatabase:
    db = container.database()
    assert isinstance(db, MemoryDatabase)
    return db


async def test_submit_then_read_the_result(app: Litestar) -> None:
    async with serving(app) as client:
        response = await client.post("/tasks/", json={"input_data": "hello"})
        assert response.status_code == 201
        created = response.json()
        assert created["status"] == "PENDING"
        assert created["result"] is None
        assert isinstance(created["id"], int)
        done = await wait_for_status(client, created["id"], "COMPLETED")
    assert done["result"] == "olleh"
    assert done["type"] == "reverse"
    assert done["attempts"] == 1
    assert set(done) == {
        "id",
        "type",
        "status",
        "result",
        "error",
        "attempts",
        "max_attempts",
        "priority",
        "queue",
        "after",
        "blocked",
        "workflow_id",
        "step",
        "unique_key",
        "callback_url",
        "created_at",
        "updated_at",
        "run_at",
        "finished_at",
        "progress",
        "progress_message",
        "progress_at",
        "tags",
        "metadata",
    }
    assert (done["progress"], done["progress_message"]) == (1.0, None)  # done, though it never reported


async def test_a_failing_handler_ends_failed_with_its_error(app: Litestar) -> None:
    async with serving(app) as client:
        created = (await client.post("/tasks/", json={"input_data": "x", "type": "explode"})).json()
        failed = await wait_for_status(client, created["id"], "FAILED")
    assert failed["error"] == "RuntimeError: handler bug"
    assert failed["attempts"] == 3


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{bad json", 400),
        (b'{"input_data": "a"', 400),
        (b"\xff\xfe", 400),
        (b"", 422),  # no body at all: the required body is missing
        (b'{"input_data": 5}', 422),
        (b'{"input_data": "a", "type": 5}', 422),
        (b'{"input_data": "a", "surprise": 1}', 422),
        (b"{}", 422),
        (b"[]", 422),
        (b'"text"', 422),
        (b"null", 422),
        (b'{"input_data": "a", "type": "nope"}', 422),
        (b'{"input_data": "a", "type": ""}', 422),
        (b'{"input_data": "nul \\u0000 inside"}', 422),
    ],
)
async def test_bad_bodies_get_problem_details_and_store_nothing(
    app: Litestar, container: Container, body: bytes, status: int
) -> None:
    async with serving(app) as client:
        response = await client.post("/tasks/", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert "Traceback" not in response.text
    assert database(container).tasks == {}


async def test_oversized_body_is_413(app: Litestar) -> None:
    async with serving(app) as client:
        response = await client.post("/tasks/", json={"input_data": "a" * 5000})
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/tasks/12345", 404),
        ("/tasks/abc", 404),
        ("/tasks/0", 422),
        ("/tasks/-1", 422),
        ("/tasks/" + "9" * 30, 422),
    ],
)
async def test_bad_or_unknown_ids(app: Litestar, path: str, status: int) -> None:
    async with serving(app) as client:
        response = await client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM


async def test_wrong_method_is_a_problem_too(app: Litestar) -> None:
    async with serving(app) as client:
        response = await client.delete("/tasks/1")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM


async def test_a_database_outage_is_503_with_retry_after(app: Litestar, container: Container) -> None:
    async with serving(app) as client:
        database(container).available = False
        response = await client.post("/tasks/", json={"input_data": "x"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == PROBLEM


async def test_unexpected_errors_are_a_bare_500(container: Container) -> None:
    class Broken(MemoryTasks):
        async def get(self, task_id: int, *, fresh: bool = False) -> Task | None:
            raise ZeroDivisionError("secret internals")

    container.tasks.override(providers.Singleton(Broken, container.database))
    async with serving(create_app(container)) as client:
        response = await client.get("/tasks/1")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert "secret" not in response.text
    assert "ZeroDivision" not in response.text


async def test_swagger_ui_and_schema(app: Litestar) -> None:
    async with serving(app) as client:
        docs = await client.get("/docs")
        schema = (await client.get("/docs/openapi.json")).json()
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert "/tasks" in schema["paths"] or "/tasks/" in schema["paths"]
    assert "/tasks/{task_id}" in schema["paths"]


async def test_failed_tasks_are_listed_and_can_be_retried(app: Litestar) -> None:
    async with serving(app) as client:
        created = (await client.post("/tasks/", json={"input_data": "x", "type": "explode"})).json()
        failed = await wait_for_status(client, created["id"], "FAILED")
        assert failed["finished_at"] is not None
        listed = (await client.get("/tasks", params={"status": "FAILED"})).json()
        assert [t["id"] for t in listed["items"]] == [created["id"]]
        assert listed["next_cursor"] is None
        retried = await client.post(f"/tasks/{created['id']}/retry")
        assert retried.status_code == 200
        assert (retried.json()["status"], retried.json()["attempts"]) == ("PENDING", 0)
        again = await wait_for_status(client, created["id"], "FAILED")
    assert again["attempts"] == 3  # a fresh set of attempts, all used up again


async def test_cancel_and_its_conflicts(app: Litestar) -> None:
    async with serving(app) as client:
        created = (await client.post("/tasks/", json={"input_data": "abc"})).json()
        cancelled = await client.post(f"/tasks/{created['id']}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "CANCELLED"
        again = await client.post(f"/tasks/{created['id']}/cancel")
        assert again.status_code == 409
        assert again.headers["content-type"] == PROBLEM
        done = (await client.post("/tasks/", json={"input_data": "abc"})).json()
        await wait_for_status(client, done["id"], "COMPLETED")
        assert (await client.post(f"/tasks/{done['id']}/retry")).status_code == 409
        assert (await client.post("/tasks/777/cancel")).status_code == 404


@pytest.mark.parametrize(
    "query",
    ["?status=NOPE", "?status=FAILED&limit=0", "?limit=501", "?cursor=bm90LWEtY3Vyc29y", "?cursor=%%%"],
)
async def test_bad_list_queries_are_422(app: Litestar, query: str) -> None:
    async with serving(app) as client:
        response = await client.get(f"/tasks{query}")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM


async def test_pages_of_tasks_with_an_opaque_cursor(app: Litestar) -> None:
    async with serving(app) as client:
        ids = [(await client.post("/tasks/", json={"input_data": f"t{i}"})).json()["id"] for i in range(7)]
        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/tasks", params=params)).json()
            pages += 1
            seen += [t["id"] for t in page["items"]]
            await client.post("/tasks/", json={"input_data": "inserted while paging"})
            cursor = page["next_cursor"]
            if cursor is None:
                break
        typed = (await client.get("/tasks", params={"type": "explode"})).json()
    assert pages == 3
    assert seen == sorted(ids, reverse=True)  # newest first, no repeats, no gaps
    assert typed["items"] == []


async def test_every_response_carries_a_request_id(app: Litestar) -> None:
    async with serving(app) as client:
        given = await client.post("/tasks/", json={"input_data": "x"}, headers={"x-request-id": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"
        for response in (await client.get("/tasks/999"), await client.get("/nowhere")):
            assert len(response.headers["x-request-id"]) >= 16


async def test_options_lists_every_method(app: Litestar) -> None:
    async with serving(app) as client:
        response = await client.options("/tasks")
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "OPTIONS", "POST"}


def at(text: object) -> datetime:
    """A timestamp of the API's (compared as text, 00:00:00Z would sort after 00:00:00.6Z)."""
    assert isinstance(text, str)
    return datetime.fromisoformat(text)


async def test_a_scheduled_task_waits_until_it_is_due(app: Litestar, container: Container) -> None:
    """``run_at`` is turned into a delay on the core's clock, the one the
    service computes ``run_at`` on: both ways of scheduling agree exactly."""
    queue = container.queue()
    assert isinstance(queue, MemoryQueue)
    clock = container.clock()
    async with serving(app) as client:
        started = loop_time()
        later = (clock.now() + timedelta(seconds=0.6)).isoformat()
        scheduled = (await client.post("/tasks/", json={"input_data": "abc", "run_at": later})).json()
        delayed = (await client.post("/tasks/", json={"input_data": "abc", "delay_s": 0.6})).json()
        for task in (scheduled, delayed):
            assert at(task["run_at"]) == at(task["created_at"]) + timedelta(seconds=0.6)
        assert queue.delayed == 2  # both published, held back by the queue until due
        await asyncio.sleep(0.3)
        for task in (scheduled, delayed):
            assert (await client.get(f"/tasks/{task['id']}")).json()["status"] == "PENDING"
        for task in (scheduled, delayed):
            done = await wait_for_status(client, task["id"], "COMPLETED")
            assert at(done["updated_at"]) >= at(task["run_at"])
        assert loop_time() - started >= 0.6 + 0.05  # due, then the handler's 0.05 s


@pytest.mark.parametrize(
    "body",
    [
        {"input_data": "a", "run_at": "2999-01-01T00:00:00"},  # no offset
        {"input_data": "a", "delay_s": -1},
        {"input_data": "a", "delay_s": 1, "run_at": "2999-01-01T00:00:00Z"},
    ],
)
async def test_bad_schedules_are_422(app: Litestar, body: dict[str, object]) -> None:
    async with serving(app) as client:
        response = await client.post("/tasks/", json=body)
    assert response.status_code == 422, response.text


async def test_a_client_that_disconnects_mid_body_is_no_server_error(
    container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen under load: Litestar reports it as a 500 with a traceback."""
    app = create_app(container)
    messages = [
        {"type": "http.request", "body": b'{"input_data": "hel', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/tasks/", "raw_path": b"/tasks/", "query_string": b"",
        "root_path": "", "headers": [(b"content-type", b"application/json"), (b"content-length", b"40")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8005), "state": {},
    }  # fmt: skip
    async with app.lifespan():
        await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
