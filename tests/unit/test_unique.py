"""Unique tasks through the service and over HTTP, on the memory adapters.

While a PENDING or PROCESSING task of a type and owner has a unique key, a
submit with the key gets that task back: nothing is stored, published or
counted. The rule itself is the adapters' (``tests/contracts/unique.py``);
here is what the service and the API make of it, the handler's ``unique=``
function, and how it meets an Idempotency-Key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar

from taskcore import HandlerRegistry, InvalidInput, TaskStatus
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from taskcore.model.idempotency import IdempotencyConflict
from taskcore.model.uniqueness import UniqueKeyTaken
from taskcore.submit.service import Submitted
from tests.core import Core, ManualClock, build_core

from .test_http import Client, on_loop_time, serving


class Order(msgspec.Struct):
    id: int
    note: str = ""


def unique_registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler
    async def reverse(text: str) -> str:
        return text[::-1]

    @registry.handler(unique=lambda order: f"order-{order.id}" if order.id > 0 else None)
    async def ship(order: Order) -> int:
        return order.id

    @registry.handler(unique=lambda text: {"not": "a string"})
    async def broken(text: str) -> None: ...

    @registry.handler(unique=lambda text: text[10])
    async def fussy(text: str) -> None: ...

    return registry


@pytest.fixture
def core(clock: ManualClock) -> Core:
    return build_core(clock=clock, registry=unique_registry())


async def finish(core: Core, task_id: int) -> None:
    """Run the task to COMPLETED, as a worker would."""
    async with core.queue.consume(prefetch=10) as consumer:
        while core.db.tasks[task_id].status is TaskStatus.PENDING:
            await core.processor.process(await consumer.next())
    assert core.db.tasks[task_id].status is TaskStatus.COMPLETED


async def test_a_unique_key_returns_the_unfinished_task_and_stores_publishes_counts_nothing(
    core: Core,
) -> None:
    first = await core.service.submit_detailed("reverse", "abc", unique_key="nightly")
    again = await core.service.submit_detailed("reverse", "xyz", unique_key="nightly")
    assert first == Submitted(first.task)
    assert first.created
    assert again == Submitted(first.task, deduplicated=True)
    assert not again.created
    assert first.task.unique_key == "nightly"
    assert len(core.db.tasks) == 1
    assert core.queue.published == 1
    assert core.telemetry.submitted["reverse"] == 1
    assert core.telemetry.deduplicated["reverse"] == 1
    # submit keeps returning a Task: the one doing the work
    assert await core.service.submit("reverse", "abc", unique_key="nightly") == first.task
    assert await core.service.submit("reverse", "abc", unique_key="other") != first.task


async def test_once_the_task_is_final_the_key_makes_a_new_task(core: Core) -> None:
    first = await core.service.submit("reverse", "abc", unique_key="k")
    await finish(core, first.id)
    second = await core.service.submit_detailed("reverse", "abc", unique_key="k")
    assert second.created
    assert second.task.id != first.id
    cancelled = await core.service.submit("reverse", "abc", unique_key="c")
    await core.service.cancel(cancelled.id)
    assert (await core.service.submit_detailed("reverse", "abc", unique_key="c")).created


async def test_keys_are_per_owner_and_per_type(core: Core) -> None:
    alice = await core.service.submit("reverse", "a", unique_key="k", owner="alice")
    bob = await core.service.submit("reverse", "a", unique_key="k", owner="bob")
    shipped = await core.service.submit("ship", {"id": 0}, unique_key="k", owner="alice")
    assert len({alice.id, bob.id, shipped.id}) == 3
    assert await core.service.submit("reverse", "b", unique_key="k", owner="alice") == alice


async def test_a_handlers_unique_function_derives_the_key_and_a_submits_key_replaces_it(core: Core) -> None:
    first = await core.service.submit_detailed("ship", {"id": 7})
    again = await core.service.submit_detailed("ship", {"id": 7, "note": "hurry"})
    assert first.task.unique_key == "order-7"
    assert (again.task, again.deduplicated) == (first.task, True)
    other = await core.service.submit_detailed("ship", {"id": 8})
    assert other.created
    own_key = await core.service.submit_detailed("ship", {"id": 7}, unique_key="manual")
    assert own_key.created
    assert own_key.task.unique_key == "manual"
    not_unique = [await core.service.submit("ship", {"id": 0}) for _ in range(2)]  # the function said None
    assert not_unique[0].id != not_unique[1].id
    assert not_unique[0].unique_key is None


@pytest.mark.parametrize(
    ("task_type", "input_data", "unique_key", "message"),
    [
        ("reverse", "a", "", "unique key is a string of 1 to 255"),
        ("reverse", "a", "k" * 256, "unique key is a string of 1 to 255"),
        ("reverse", "a", 7, "unique key is a string of 1 to 255"),
        ("broken", "a", None, "'broken''s unique function"),
        ("fussy", "short", None, "cannot derive the unique key of this 'fussy' input: IndexError"),
    ],
)
async def test_a_bad_key_is_invalid_input_and_writes_nothing(
    core: Core, task_type: str, input_data: Any, unique_key: Any, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await core.service.submit(task_type, input_data, unique_key=unique_key)
    assert core.db.tasks == {}
    assert core.queue.published == 0


async def test_a_retry_while_another_task_holds_the_key_is_refused(core: Core) -> None:
    first = await core.service.submit("reverse", "a", unique_key="k")
    await core.service.cancel(first.id)
    second = await core.service.submit("reverse", "a", unique_key="k")
    with pytest.raises(UniqueKeyTaken, match=f"task {first.id} cannot run again"):
        await core.service.retry(first.id)
    assert core.db.tasks[first.id].status is TaskStatus.CANCELLED
    await core.service.cancel(second.id)
    assert (await core.service.retry(first.id)).status is TaskStatus.PENDING


async def test_with_an_idempotency_key_a_replay_answers_as_the_first_use_did(core: Core) -> None:
    """The key's first use decides, and is remembered: created, or deduplicated
    into the holder. A replay never creates a task, even once the unique key
    is free again; the same key with another unique key is another request."""
    submit = core.service.submit_detailed
    created = await submit("reverse", "a", unique_key="u", idempotency_key="i1")
    assert created == Submitted(created.task)
    assert await submit("reverse", "a", unique_key="u", idempotency_key="i1") == Submitted(
        created.task, replayed=True
    )
    merged = await submit("reverse", "a", unique_key="u", idempotency_key="i2")
    assert merged == Submitted(created.task, deduplicated=True)
    await finish(core, created.task.id)
    replay = await submit("reverse", "a", unique_key="u", idempotency_key="i2")
    assert replay == Submitted(core.db.tasks[created.task.id], deduplicated=True, replayed=True)
    assert len(core.db.tasks) == 1
    with pytest.raises(IdempotencyConflict):
        await submit("reverse", "a", unique_key="v", idempotency_key="i1")
    with pytest.raises(IdempotencyConflict):
        await submit("reverse", "a", idempotency_key="i1")
    assert await core.service.submit_once("reverse", "a", unique_key="u", idempotency_key="i2") == (
        core.db.tasks[created.task.id],
        False,
    )
    assert core.telemetry.submitted["reverse"] == 1
    assert core.telemetry.deduplicated["reverse"] == 1  # replays are not counted again
    assert core.queue.published == 1


# -- over HTTP ------------------------------------------------------------------------


@pytest.fixture
def app() -> Litestar:
    container = on_loop_time(build_container(load_settings({}), unique_registry()))
    return create_app(container)  # no worker: tasks stay PENDING


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[Client]:
    async with serving(app) as client:
        yield client


@pytest.mark.looptime
async def test_over_http_a_duplicate_is_200_with_deduplicated_true(client: Client) -> None:
    body = {"input_data": "abc", "unique_key": "nightly"}
    first = await client.post("/tasks/", json=body)
    again = await client.post("/tasks/", json={**body, "input_data": "xyz"})
    assert first.status_code == 201
    assert "deduplicated" not in first.headers
    assert first.json()["unique_key"] == "nightly"
    assert again.status_code == 200
    assert again.headers["deduplicated"] == "true"
    assert again.headers["location"] == f"/tasks/{first.json()['id']}"
    assert again.json() == first.json()
    derived = [await client.post("/tasks/", json={"type": "ship", "input_data": {"id": 3}}) for _ in range(2)]
    assert [r.status_code for r in derived] == [201, 200]
    assert derived[0].json()["unique_key"] == "order-3"


@pytest.mark.looptime
async def test_over_http_with_an_idempotency_key_the_headers_say_both(client: Client) -> None:
    async def post(key: str, unique_key: str = "u") -> tuple[int, str | None, str | None, int]:
        response = await client.post(
            "/tasks/",
            json={"input_data": "a", "unique_key": unique_key},
            headers={"Idempotency-Key": key},
        )
        headers = response.headers
        return (
            response.status_code,
            headers.get("deduplicated"),
            headers.get("idempotent-replayed"),
            response.json().get("id", 0),
        )

    created = await post("i1")
    assert created[:3] == (201, None, None)
    assert await post("i1") == (201, None, "true", created[3])
    assert await post("i2") == (200, "true", None, created[3])
    assert await post("i2") == (200, "true", "true", created[3])
    assert (await post("i1", unique_key="other"))[0] == 422


@pytest.mark.looptime
async def test_over_http_a_bad_key_is_422_and_a_retry_into_a_held_key_409(client: Client) -> None:
    for bad in ["", "k" * 256, 7]:
        response = await client.post("/tasks/", json={"input_data": "a", "unique_key": bad})
        assert response.status_code == 422, bad
    assert (await client.post("/tasks/", json={"type": "fussy", "input_data": "x"})).status_code == 422
    first = (await client.post("/tasks/", json={"input_data": "a", "unique_key": "k"})).json()
    assert (await client.post(f"/tasks/{first['id']}/cancel")).status_code == 200
    assert (await client.post("/tasks/", json={"input_data": "a", "unique_key": "k"})).status_code == 201
    refused = await client.post(f"/tasks/{first['id']}/retry")
    assert refused.status_code == 409
    assert "unique key 'k'" in refused.json()["detail"]


@pytest.mark.looptime
async def test_the_openapi_document_describes_the_key_and_both_answers(client: Client) -> None:
    schema = (await client.get("/docs/openapi.json")).json()
    submit = schema["paths"]["/tasks"]["post"]
    assert {"200", "201"} <= set(submit["responses"])
    assert "Deduplicated" in submit["responses"]["200"]["description"]
    variant = schema["components"]["schemas"]["SubmitTask"]["oneOf"][0]
    (key, _) = variant["properties"]["unique_key"]["anyOf"]  # a string, or null
    assert (key["type"], key["minLength"], key["maxLength"]) == ("string", 1, 255)
