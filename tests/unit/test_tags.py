"""Tags and metadata (``model/tags.py``): checked at every submit, kept, returned, filtered on."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar

from taskcore import HandlerRegistry, register_builtins
from taskcore.adapters.memory import MemoryTransaction
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from taskcore.errors import InvalidInput
from taskcore.model.batch import TaskRequest
from taskcore.model.idempotency import IdempotencyConflict
from taskcore.model.query import TaskQuery
from taskcore.model.tags import MAX_METADATA_BYTES, check_metadata, check_tags, merged
from taskcore.model.workflows import StepSpec
from tests.core import Core

from .test_http import Client, on_loop_time, serving

# -- the rules ---------------------------------------------------------------------------


def test_tags_keep_their_order_without_repeats() -> None:
    assert check_tags(["b", "a", "b", "c:1", "a"]) == ("b", "a", "c:1")
    assert check_tags([]) == ()
    assert check_tags(["x"] * 40) == ("x",)  # sixteen distinct ones is the limit, not sixteen given


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ([""], "1 to 64 characters"),
        (["x" * 65], "1 to 64 characters"),
        (["with space"], "1 to 64 characters"),
        (["a,b"], "1 to 64 characters"),
        (['"quoted"'], "1 to 64 characters"),
        (["ünï"], "1 to 64 characters"),
        (["trailing\n"], "1 to 64 characters"),
        ([7], "1 to 64 characters"),
        ([f"t{n}" for n in range(17)], "at most 16 tags, got 17"),
        ("nightly", "a list of strings"),
    ],
)
def test_a_bad_tag_is_refused_with_what_a_tag_is(tags: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_tags(tags)


def test_metadata_is_a_small_json_object() -> None:
    assert check_metadata(None) == {}
    assert check_metadata({"a": [1, {"b": None}]}) == {"a": [1, {"b": None}]}
    assert check_metadata({"k": "x" * (MAX_METADATA_BYTES - 8)})  # {"k":"..."} is 8 bytes more
    with pytest.raises(InvalidInput, match=f"at most {MAX_METADATA_BYTES} bytes"):
        check_metadata({"k": "x" * (MAX_METADATA_BYTES - 7)})
    for bad in ([1], "text", 3, {1: "x"}):
        with pytest.raises(InvalidInput, match="a JSON object"):
            check_metadata(bad)
    with pytest.raises(InvalidInput, match="must be JSON"):
        check_metadata({"k": object()})


def test_a_step_adds_its_own_to_its_workflow_s() -> None:
    tags, metadata = merged(("wf", "shared"), {"a": 1, "b": 1}, ("shared", "step"), {"b": 2})
    assert (tags, metadata) == (("wf", "shared", "step"), {"a": 1, "b": 2})
    with pytest.raises(InvalidInput, match="at most 16"):
        merged([f"w{n}" for n in range(10)], {}, [f"s{n}" for n in range(7)], {})


# -- the library -------------------------------------------------------------------------


async def test_every_submit_of_the_library_keeps_them(core: Core) -> None:
    one = await core.service.submit("reverse", "a", tags=["x", "y", "x"], metadata={"by": "test"})
    assert (one.tags, one.metadata) == (("x", "y"), {"by": "test"})
    assert (await core.service.get(one.id)).tags == ("x", "y")  # read through the cache
    plain = await core.service.submit("reverse", "b")
    assert (plain.tags, plain.metadata) == ((), {})
    batch = await core.service.submit_many(
        [TaskRequest(type="reverse", input="c", tags=("x",)), TaskRequest(type="reverse", input="d")]
    )
    assert [one.task.tags for one in batch] == [("x",), ()]
    transaction = MemoryTransaction(core.db)
    within = await core.service.submit("reverse", "e", tags=["x", "in-tx"], connection=transaction)
    transaction.commit()
    assert core.db.tasks[within.id].tags == ("x", "in-tx")
    found = await core.tasks.find(TaskQuery(tags=("x",)))
    assert [task.id for task in found] == [within.id, batch[0].task.id, one.id]


async def test_an_idempotency_key_s_request_includes_its_tags_and_metadata(core: Core) -> None:
    first, created = await core.service.submit_once("reverse", "a", idempotency_key="k", tags=["x"])
    again, replayed = await core.service.submit_once("reverse", "a", idempotency_key="k", tags=["x"])
    assert (again.id, created, replayed) == (first.id, True, False)
    for changed in ({"tags": ["y"]}, {"tags": ["x"], "metadata": {"m": 1}}):
        with pytest.raises(IdempotencyConflict):
            await core.service.submit_once("reverse", "a", idempotency_key="k", **changed)  # type: ignore[arg-type]
    untagged, _ = await core.service.submit_once("reverse", "a", idempotency_key="plain")
    same, _ = await core.service.submit_once("reverse", "a", idempotency_key="plain", metadata={})
    assert same.id == untagged.id  # no metadata and {} are one request


async def test_a_bad_submit_stores_nothing_and_a_bad_batch_item_is_named(core: Core) -> None:
    with pytest.raises(InvalidInput, match="a tag is"):
        await core.service.submit("reverse", "a", tags=["bad tag"])
    with pytest.raises(InvalidInput, match="items\\[1\\]: metadata must be a JSON object"):
        await core.service.submit_many(
            [TaskRequest(type="reverse", input="a"), TaskRequest(type="reverse", input="b", metadata=[1])]  # type: ignore[arg-type]
        )
    assert core.db.tasks == {}


async def test_a_workflow_gives_every_step_its_tags_and_metadata(core: Core) -> None:
    stored = await core.workflows.submit(
        [
            StepSpec(name="a", type="reverse", input="x", tags=("step:a",), metadata={"who": "a"}),
            StepSpec(name="b", type="reverse", input="y", after=("a",)),
        ],
        tags=["run:7"],
        metadata={"who": "workflow", "run": 7},
    )
    assert [(task.tags, task.metadata) for task in stored.steps] == [
        (("run:7", "step:a"), {"who": "a", "run": 7}),
        (("run:7",), {"who": "workflow", "run": 7}),
    ]
    with pytest.raises(InvalidInput, match="step 'b': a tag is"):
        await core.workflows.submit(
            [
                StepSpec(name="a", type="reverse", input="x"),
                StepSpec(name="b", type="reverse", input="y", tags=("?",)),
            ]
        )


# -- over HTTP ---------------------------------------------------------------------------


@pytest.fixture
def app() -> Litestar:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    return create_app(on_loop_time(build_container(load_settings({}), registry)), embedded_worker=False)


async def ids(client: Client, query: str) -> list[int]:
    answer = await client.get(f"/tasks?{query}")
    assert answer.status_code == 200, answer.text
    return [task["id"] for task in answer.json()["items"]]


@pytest.mark.looptime
async def test_over_http_tags_and_metadata_are_returned_and_filter_a_listing(app: Litestar) -> None:
    async with serving(app) as client:
        body = {"input_data": "a", "tags": ["red", "big", "red"], "metadata": {"order": 42}}
        created = await client.post("/tasks/", json=body)
        assert created.status_code == 201, created.text
        red_big = created.json()
        assert (red_big["tags"], red_big["metadata"]) == (["red", "big"], {"order": 42})
        read = (await client.get(f"/tasks/{red_big['id']}")).json()
        assert (read["tags"], read["metadata"]) == (["red", "big"], {"order": 42})
        plain = (await client.post("/tasks/", json={"input_data": "b"})).json()
        assert (plain["tags"], plain["metadata"]) == ([], {})
        batch = await client.post("/tasks/batch", json={"items": [{"input_data": "c", "tags": ["red"]}]})
        red = batch.json()["items"][0]
        assert red["tags"] == ["red"]

        assert await ids(client, "tag=red") == [red["id"], red_big["id"]]
        assert await ids(client, "tag=red&tag=big") == [red_big["id"]]
        assert await ids(client, "tag=red&status=PENDING&type=reverse&queue=default") == [
            red["id"],
            red_big["id"],
        ]
        assert await ids(client, "tag=green") == []
        page = (await client.get("/tasks?tag=red&limit=1")).json()
        assert [task["id"] for task in page["items"]] == [red["id"]]
        assert await ids(client, f"tag=red&limit=1&cursor={page['next_cursor']}") == [red_big["id"]]

        listed = (await client.get("/tasks?tag=big")).json()["items"][0]
        assert listed["metadata"] == {"order": 42}


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"input_data": "a", "tags": ["bad tag"]}, "tags"),
        ({"input_data": "a", "tags": ["x" * 65]}, "tags"),
        ({"input_data": "a", "tags": [f"t{n}" for n in range(17)]}, "tags"),
        ({"input_data": "a", "tags": "red"}, "tags"),
        ({"input_data": "a", "metadata": [1]}, "metadata"),
        ({"input_data": "a", "metadata": "x"}, "metadata"),
        ({"input_data": "a", "metadata": {"k": "x" * 5000}}, "at most 4096 bytes"),
    ],
)
async def test_over_http_bad_tags_or_metadata_are_422_and_store_nothing(
    app: Litestar, body: dict[str, Any], detail: str
) -> None:
    async with serving(app) as client:
        refused = await client.post("/tasks/", json=body)
        assert refused.status_code == 422, refused.text
        assert detail in refused.text
        batch = await client.post("/tasks/batch", json={"items": [{"input_data": "ok"}, body]})
        assert batch.status_code == 422, batch.text
        assert await ids(client, "") == []


@pytest.mark.looptime
@pytest.mark.parametrize("query", ["tag=", "tag=bad%20tag", "&".join(f"tag=t{n}" for n in range(17))])
async def test_over_http_a_bad_tag_filter_is_422(app: Litestar, query: str) -> None:
    async with serving(app) as client:
        assert (await client.get(f"/tasks?{query}")).status_code == 422


@pytest.mark.looptime
async def test_over_http_a_workflow_tags_its_steps(app: Litestar) -> None:
    async with serving(app) as client:
        body = {
            "tags": ["run:1"],
            "metadata": {"run": 1, "who": "wf"},
            "steps": [
                {
                    "name": "a",
                    "type": "reverse",
                    "input_data": "x",
                    "tags": ["first"],
                    "metadata": {"who": "a"},
                },
                {"name": "b", "type": "reverse", "input_data": "y", "after": ["a"]},
            ],
        }
        created = await client.post("/workflows", json=body)
        assert created.status_code == 201, created.text
        steps = created.json()["steps"]
        assert [(step["tags"], step["metadata"]) for step in steps] == [
            (["run:1", "first"], {"run": 1, "who": "a"}),
            (["run:1"], {"run": 1, "who": "wf"}),
        ]
        assert await ids(client, "tag=run:1") == [steps[1]["id"], steps[0]["id"]]
        body["steps"][1]["tags"] = [f"s{n}" for n in range(16)]  # 17 with the workflow's
        refused = await client.post("/workflows", json=body)
        assert refused.status_code == 422
        assert "step 'b'" in refused.json()["detail"]


@pytest.mark.looptime
async def test_over_http_bulk_cancel_takes_a_tag_filter(app: Litestar) -> None:
    async with serving(app) as client:
        doomed = (await client.post("/tasks/", json={"input_data": "a", "tags": ["doomed", "x"]})).json()
        kept = (await client.post("/tasks/", json={"input_data": "b", "tags": ["x"]})).json()
        cancelled = await client.post("/tasks/cancel", json={"tags": ["doomed"]})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["changed"] == 1
        assert (await client.get(f"/tasks/{doomed['id']}")).json()["status"] == "CANCELLED"
        assert (await client.get(f"/tasks/{kept['id']}")).json()["status"] == "PENDING"
        assert (await client.post("/tasks/cancel", json={"tags": []})).status_code == 422
        retried = await client.post("/tasks/retry", json={"tags": ["doomed", "x"]})
        assert retried.json()["changed"] == 1
