"""Bulk submit on the memory adapters: validated whole, stored together, woken together."""

from __future__ import annotations

import pytest
from litestar import Litestar

from taskcore import HandlerRegistry, TaskStatus, register_builtins
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from taskcore.errors import InvalidInput, UnstorableValue
from taskcore.model.batch import TaskRequest
from tests.core import Core

from .test_http import on_loop_time, serving


def reverse(text: object, **changes: object) -> TaskRequest:
    return TaskRequest(type="reverse", input=text, **changes)  # type: ignore[arg-type]


async def test_a_batch_is_stored_in_order_and_every_task_woken(core: Core) -> None:
    submitted = await core.service.submit_many(
        [reverse(f"t{n}", priority=n % 10) for n in range(50)], owner="a"
    )
    assert [one.task.input for one in submitted] == [f"t{n}" for n in range(50)]
    assert all(one.created and one.task.owner == "a" for one in submitted)
    assert len({one.task.id for one in submitted}) == 50
    assert core.queue.wake_ups == 50
    assert core.queue.depth == 10  # one message per priority: the wake-ups of a batch share them
    assert core.telemetry.submitted["reverse"] == 50
    cached = [await core.cache.get(one.task.id) for one in submitted]
    assert all(task is not None for task in cached)


async def test_a_bad_task_is_named_by_its_position_and_nothing_is_stored(core: Core) -> None:
    with pytest.raises(InvalidInput, match=r"items\[2\]: invalid input"):
        await core.service.submit_many([reverse("a"), reverse("b"), reverse(3), reverse("d")])
    with pytest.raises(InvalidInput, match=r"items\[1\]: unknown task type"):
        await core.service.submit_many([reverse("a"), TaskRequest(type="nope", input=1)])
    with pytest.raises(UnstorableValue, match=r"items\[1\]"):
        await core.service.submit_many([reverse("a"), reverse("nul \x00 here")])
    with pytest.raises(InvalidInput, match="1 to 1000"):
        await core.service.submit_many([])
    assert core.db.tasks == {}
    assert core.queue.depth == 0


async def test_a_batch_may_hold_unique_and_dependent_tasks(core: Core) -> None:
    first = await core.service.submit("reverse", "x")
    submitted = await core.service.submit_many(
        [
            reverse("a", unique_key="k"),
            reverse("b", unique_key="k"),  # the same key in one batch: the first holds it
            reverse("c", after=(first.id,)),
        ]
    )
    assert [one.created for one in submitted] == [True, False, True]
    assert submitted[1].task.id == submitted[0].task.id
    assert submitted[2].task.blocked
    assert core.db.tasks[submitted[2].task.id].status is TaskStatus.PENDING


@pytest.fixture
def app() -> Litestar:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    return create_app(on_loop_time(build_container(load_settings({}), registry)), embedded_worker=True)


@pytest.mark.looptime
async def test_over_http_a_batch_is_201_with_every_task_or_a_422_naming_the_bad_one(app: Litestar) -> None:
    async with serving(app) as client:
        body = {
            "items": [{"input_data": f"t{n}"} for n in range(5)]
            + [{"input_data": "u", "unique_key": "k"}] * 2
        }
        created = await client.post("/tasks/batch", json=body)
        assert created.status_code == 201, created.text
        answer = created.json()
        assert [task["status"] for task in answer["items"]] == ["PENDING"] * 7
        assert answer["deduplicated"] == [6]
        refused = await client.post("/tasks/batch", json={"items": [{"input_data": "a"}, {"input_data": 1}]})
        assert refused.status_code == 422
        assert refused.json()["detail"].startswith("items[1]: ")
        late = {
            "items": [
                {"input_data": "a"},
                {"input_data": "b", "delay_s": 1, "run_at": "2030-01-01T00:00:00Z"},
            ]
        }
        assert (await client.post("/tasks/batch", json=late)).json()["detail"].startswith("items[1]: ")
        too_many = await client.post("/tasks/batch", json={"items": [{"input_data": "a"}] * 1001})
        assert too_many.status_code in (413, 422)
        listed = (await client.get("/tasks", params={"limit": 500})).json()["items"]
        assert len(listed) == 6  # only the first batch, once
