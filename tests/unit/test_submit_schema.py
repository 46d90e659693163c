"""The POST /tasks/ body schema is built from the handler registry and agrees with what is accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from taskcore import HandlerRegistry, register_builtins
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings

BODY = "#/components/schemas/SubmitTask"


class Order(msgspec.Struct):
    sku: str
    quantity: int


class Tree(msgspec.Struct):
    children: list[Tree]


@pytest.fixture
def container() -> Container:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=60)

    @registry.handler
    def price(order: Order) -> float:
        return order.quantity * 9.5

    @registry.handler
    def count(tree: Tree) -> int:
        return 1 + sum(count(child) for child in tree.children)

    return build_container(load_settings({}), registry)


@pytest.fixture
async def client(container: Container) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with AsyncTestClient(create_app(container)) as client:
        yield client


@pytest.fixture
async def openapi(client: AsyncTestClient) -> dict[str, Any]:  # type: ignore[type-arg]
    document: dict[str, Any] = (await client.get("/docs/openapi.json")).json()
    return document


def body_validator(openapi: dict[str, Any]) -> jsonschema_rs.Validator:
    """The published body schema, its references resolved within the document."""
    schema = {"$ref": BODY, "components": openapi["components"]}
    return jsonschema_rs.validator_for(schema, validate_formats=True)


async def test_the_body_lists_each_registered_type_with_its_input(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"]["/tasks"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": BODY}
    body = openapi["components"]["schemas"]["SubmitTask"]
    variants = {variant["title"]: variant for variant in body["oneOf"]}
    assert sorted(variants) == ["count", "price", "reverse"]
    for name, variant in variants.items():
        assert variant["properties"]["type"]["const"] == name
        assert variant["additionalProperties"] is False
        assert set(variant["properties"]) == {
            "type",
            "input_data",
            "run_at",
            "delay_s",
            "priority",
            "queue",
            "after",
            "run_anyway",
            "unique_key",
            "callback_url",
            "tags",
            "metadata",
        }
    assert variants["reverse"]["required"] == ["input_data"]  # the default type
    assert variants["price"]["required"] == ["input_data", "type"]
    assert variants["reverse"]["properties"]["input_data"]["type"] == "string"
    assert variants["price"]["properties"]["input_data"]["allOf"] == [
        {"$ref": "#/components/schemas/TaskInput.Order"}
    ]
    order = openapi["components"]["schemas"]["TaskInput.Order"]
    assert order["required"] == ["sku", "quantity"]
    tree = openapi["components"]["schemas"]["TaskInput.Tree"]
    assert tree["properties"]["children"]["items"] == {"$ref": "#/components/schemas/TaskInput.Tree"}
    priority = variants["reverse"]["properties"]["priority"]
    assert priority | {"description": ""} == {
        "type": "integer", "minimum": 0, "maximum": 9, "default": 0, "description": ""
    }  # fmt: skip


ACCEPTED: list[dict[str, Any]] = [
    {"input_data": "a"},
    {"input_data": "a", "type": "reverse", "priority": 9},
    {"input_data": "a", "priority": 0, "run_at": None, "delay_s": None},
    {"input_data": "a", "run_at": "2001-01-01T00:00:00Z"},  # passed: run now
    {"input_data": "a", "run_at": "0001-01-01T00:00:00+05:00"},
    {"input_data": "a", "run_at": "2999-01-01T00:00:00Z"},  # no upper limit
    {"input_data": "a", "run_at": "9999-12-31T23:59:59.999999-23:59"},
    {"input_data": "a", "run_at": None, "delay_s": 3},
    {"input_data": "a", "delay_s": 31_622_400},
    {"type": "price", "input_data": {"sku": "A-1", "quantity": 3}},
    {"type": "count", "input_data": {"children": [{"children": []}]}, "priority": 4},
]
REFUSED: list[dict[str, Any]] = [
    {},
    {"input_data": 5},
    {"input_data": "a", "type": "nope"},
    {"input_data": "a", "type": ""},
    {"type": "price", "input_data": "a"},
    {"type": "price", "input_data": {"sku": "A-1"}},
    {"input_data": {"sku": "A-1", "quantity": 3}},  # reverse takes a string
    {"type": "count", "input_data": {"children": [{"kids": []}]}},
    {"input_data": "a", "priority": 10},
    {"input_data": "a", "priority": -1},
    {"input_data": "a", "priority": "x"},
    {"input_data": "a", "priority": 1.5},
    {"input_data": "a", "priority": None},
    {"input_data": "a", "delay_s": 1, "run_at": "2999-01-01T00:00:00Z"},
    {"input_data": "a", "delay_s": -1},
    {"input_data": "a", "delay_s": 31_622_401},
    {"input_data": "a", "run_at": "2999-01-01T00:00:00"},  # no offset
    {"input_data": "a", "run_at": "tomorrow"},
    {"input_data": "a", "surprise": 1},
]


@pytest.mark.parametrize("body", ACCEPTED)
async def test_a_schema_valid_body_is_accepted(
    client: AsyncTestClient,  # type: ignore[type-arg]
    openapi: dict[str, Any],
    body: dict[str, Any],
) -> None:
    assert body_validator(openapi).is_valid(body)
    response = await client.post("/tasks/", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["priority"] == body.get("priority", 0)


@pytest.mark.parametrize("body", REFUSED)
async def test_a_schema_invalid_body_is_refused(
    client: AsyncTestClient,  # type: ignore[type-arg]
    openapi: dict[str, Any],
    body: dict[str, Any],
) -> None:
    assert not body_validator(openapi).is_valid(body)
    response = await client.post("/tasks/", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_run_at_that_has_passed_runs_now_and_a_far_one_is_kept(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    past = (await client.post("/tasks/", json={"input_data": "a", "run_at": "2001-01-01T00:00:00Z"})).json()
    assert past["run_at"] == past["created_at"]
    far = (
        await client.post("/tasks/", json={"input_data": "a", "run_at": "2999-05-06T07:08:09+02:00"})
    ).json()
    assert far["run_at"].startswith("2999-05-06T05:08:09")  # in UTC; microseconds of request time later
    end = {"input_data": "a", "run_at": "9999-12-31T23:59:59-05:00"}  # beyond a datetime once in UTC
    assert (await client.post("/tasks/", json=end)).json()["run_at"].startswith("9999-12-31T00:00:0")


async def test_an_empty_registry_documents_that_nothing_is_accepted() -> None:
    app = create_app(build_container(load_settings({}), HandlerRegistry()))
    async with AsyncTestClient(app) as client:
        body = (await client.get("/docs/openapi.json")).json()["components"]["schemas"]["SubmitTask"]
        assert body["not"] == {}
        assert not jsonschema_rs.validator_for(body).is_valid({"input_data": "a"})
