"""Idempotency-Key on submit: retries return the original task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from taskcore import HandlerRegistry, register_builtins
from taskcore.adapters.memory import MemoryDatabase
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings

Client = AsyncTestClient  # type: ignore[type-arg]


@pytest.fixture
def container() -> Container:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    return build_container(load_settings({}), registry)


@pytest.fixture
async def client(container: Container) -> AsyncIterator[Client]:
    async with AsyncTestClient(create_app(container)) as client:
        yield client


def stored(container: Container) -> MemoryDatabase:
    database = container.database()
    assert isinstance(database, MemoryDatabase)
    return database


async def test_a_retry_returns_the_original_task(client: Client, container: Container) -> None:
    key = {"Idempotency-Key": "order-42"}
    first = await client.post("/tasks/", json={"input_data": "abc"}, headers=key)
    again = await client.post("/tasks/", json={"input_data": "abc"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert first.headers["location"] == f"/tasks/{first.json()['id']}"
    database = stored(container)
    assert len(database.tasks) == 1
    assert [used.task_id for used in database.idempotency_keys.values()] == [first.json()["id"]]


async def test_the_same_key_with_another_body_is_422(client: Client, container: Container) -> None:
    key = {"Idempotency-Key": "k"}
    await client.post("/tasks/", json={"input_data": "abc"}, headers=key)
    other = await client.post("/tasks/", json={"input_data": "xyz"}, headers=key)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert len(stored(container).tasks) == 1


async def test_keys_are_per_owner_and_requests_without_a_key_are_independent(client: Client) -> None:
    a = (await client.post("/tasks/", json={"input_data": "a"})).json()["id"]
    b = (await client.post("/tasks/", json={"input_data": "a"})).json()["id"]
    assert a != b


async def test_concurrent_duplicates_make_one_task(client: Client, container: Container) -> None:
    key = {"Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(client.post("/tasks/", json={"input_data": "same"}, headers=key) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(stored(container).tasks) == 1


@pytest.mark.parametrize("value", ["", "x" * 256])
async def test_a_bad_key_is_422(client: Client, value: str) -> None:
    response = await client.post("/tasks/", json={"input_data": "a"}, headers={"Idempotency-Key": value})
    assert response.status_code in (400, 422)
