"""The HTTP contract through Litestar's test client, on the memory adapters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from taskcore import HandlerRegistry, register_builtins
from taskcore.adapters.memory import MemoryRepository
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings

PROBLEM = "application/problem+json"


@pytest.fixture
def container() -> Container:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0.05)

    @registry.handler
    async def explode(_: str) -> None:
        raise RuntimeError("handler bug")

    return build_container(
        load_settings({}, max_body_bytes=4096, retry_base_s=0.01, retry_cap_s=0.02), registry
    )


@pytest.fixture
async def client(container: Container) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    app = create_app(container, embedded_worker=True)
    async with AsyncTestClient(app) as client:
        yield client


async def wait_for_status(client: AsyncTestClient, task_id: int, status: str) -> dict[str, object]:  # type: ignore[type-arg]
    for _ in range(200):
        body: dict[str, object] = (await client.get(f"/tasks/{task_id}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"task {task_id} never reached {status}")


async def test_submit_then_read_the_result(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
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
        "created_at",
        "updated_at",
        "run_at",
        "finished_at",
    }


async def test_a_failing_handler_ends_failed_with_its_error(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
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
    client: AsyncTestClient,  # type: ignore[type-arg]
    container: Container,
    body: bytes,
    status: int,
) -> None:
    response = await client.post("/tasks/", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert "Traceback" not in response.text
    repository = container.repository()
    assert isinstance(repository, MemoryRepository)
    assert repository.tasks == {}


async def test_oversized_body_is_413(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
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
async def test_bad_or_unknown_ids(client: AsyncTestClient, path: str, status: int) -> None:  # type: ignore[type-arg]
    response = await client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM


async def test_wrong_method_is_a_problem_too(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.delete("/tasks/1")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM


async def test_a_database_outage_is_503_with_retry_after(
    client: AsyncTestClient,  # type: ignore[type-arg]
    container: Container,
) -> None:
    repository = container.repository()
    assert isinstance(repository, MemoryRepository)
    repository.available = False
    response = await client.post("/tasks/", json={"input_data": "x"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == PROBLEM


async def test_unexpected_errors_are_a_bare_500(container: Container) -> None:
    class Broken(MemoryRepository):
        async def get(self, task_id: int) -> None:
            raise ZeroDivisionError("secret internals")

    container.repository.override(Broken())
    async with AsyncTestClient(create_app(container)) as client:
        response = await client.get("/tasks/1")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert "secret" not in response.text
    assert "ZeroDivision" not in response.text


async def test_swagger_ui_and_schema(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    schema = (await client.get("/docs/openapi.json")).json()
    assert "/tasks" in schema["paths"] or "/tasks/" in schema["paths"]
    assert "/tasks/{task_id}" in schema["paths"]


async def test_failed_tasks_are_listed_and_can_be_requeued(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    created = (await client.post("/tasks/", json={"input_data": "x", "type": "explode"})).json()
    failed = await wait_for_status(client, created["id"], "FAILED")
    assert failed["finished_at"] is not None
    listed = (await client.get("/tasks", params={"status": "FAILED"})).json()
    assert [t["id"] for t in listed["items"]] == [created["id"]]
    assert listed["next_cursor"] is None
    retried = await client.post(f"/tasks/{created['id']}/retry")
    assert retried.status_code == 200
    assert (retried.json()["status"], retried.json()["attempts"]) == ("PENDING", 0)
    await wait_for_status(client, created["id"], "FAILED")


async def test_cancel_and_its_conflicts(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
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
async def test_bad_list_queries_are_422(client: AsyncTestClient, query: str) -> None:  # type: ignore[type-arg]
    response = await client.get(f"/tasks{query}")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM


async def test_pages_of_tasks_with_an_opaque_cursor(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
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
    assert pages == 3
    assert seen == sorted(ids, reverse=True)  # newest first, no repeats, no gaps
    typed = (await client.get("/tasks", params={"type": "explode"})).json()
    assert typed["items"] == []


async def test_every_response_carries_a_request_id(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    given = await client.post("/tasks/", json={"input_data": "x"}, headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    for response in (await client.get("/tasks/999"), await client.get("/nowhere")):
        assert len(response.headers["x-request-id"]) >= 16


async def test_options_lists_every_method(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.options("/tasks")
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "OPTIONS", "POST"}


async def test_a_scheduled_task_waits_until_it_is_due(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    from datetime import UTC, datetime, timedelta

    later = (datetime.now(UTC) + timedelta(seconds=0.6)).isoformat()
    scheduled = (await client.post("/tasks/", json={"input_data": "abc", "run_at": later})).json()
    delayed = (await client.post("/tasks/", json={"input_data": "abc", "delay_s": 0.6})).json()
    for task in (scheduled, delayed):
        assert task["run_at"] > task["created_at"]
    await asyncio.sleep(0.3)
    assert (await client.get(f"/tasks/{scheduled['id']}")).json()["status"] == "PENDING"
    for task in (scheduled, delayed):
        done = await wait_for_status(client, task["id"], "COMPLETED")
        assert done["updated_at"] >= task["run_at"]


@pytest.mark.parametrize(
    "body",
    [
        {"input_data": "a", "run_at": "2999-01-01T00:00:00"},  # no offset
        {"input_data": "a", "delay_s": -1},
        {"input_data": "a", "delay_s": 1, "run_at": "2999-01-01T00:00:00Z"},
    ],
)
async def test_bad_schedules_are_422(client: AsyncTestClient, body: dict[str, object]) -> None:  # type: ignore[type-arg]
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
    async with AsyncTestClient(app):  # runs the lifespan
        await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
