"""``/workflows`` and ``after`` over HTTP, with the app in the test's event loop on fake time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar import Litestar

from taskcore import HandlerRegistry, TaskContext, register_builtins
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings

from .test_http import Client, on_loop_time, serving

pytestmark = pytest.mark.looptime


@pytest.fixture
def app() -> Litestar:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)

    @registry.handler
    async def join(separator: str, ctx: TaskContext) -> str:
        return separator.join(str(ctx.results[name]) for name in sorted(ctx.results))

    @registry.handler(max_attempts=1)
    async def boom(_: str) -> None:
        raise RuntimeError("boom")

    container = on_loop_time(build_container(load_settings({}), registry))
    return create_app(container, embedded_worker=True)


async def final(client: Client, workflow_id: int) -> dict[str, Any]:
    for _ in range(1000):
        body: dict[str, Any] = (await client.get(f"/workflows/{workflow_id}")).json()
        if body["status"] != "RUNNING":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"workflow {workflow_id} still running")


def diamond(middle: str = "reverse") -> dict[str, Any]:
    return {
        "name": "diamond",
        "steps": [
            {"name": "a", "type": "reverse", "input_data": "abc"},
            {"name": "b", "type": middle, "input_data": "xy", "after": ["a"]},
            {"name": "c", "type": "reverse", "input_data": "pq", "after": ["a"]},
            {"name": "d", "type": "join", "input_data": "+", "after": ["b", "c"]},
        ],
    }


async def test_a_workflow_is_submitted_runs_and_reads_as_one(app: Litestar) -> None:
    async with serving(app) as client:
        created = await client.post("/workflows", json=diamond())
        assert created.status_code == 201, created.text
        body = created.json()
        assert created.headers["location"] == f"/workflows/{body['id']}"
        assert [(s["step"], s["blocked"]) for s in body["steps"]] == [
            ("a", False),
            ("b", True),
            ("c", True),
            ("d", True),
        ]
        ids = {s["step"]: s["id"] for s in body["steps"]}
        assert body["steps"][3]["after"] == [ids["b"], ids["c"]]
        done = await final(client, body["id"])
        assert done["status"] == "COMPLETED"
        assert done["steps"][3]["result"] == "yx+qp"  # d read b's and c's results
        one = (await client.get(f"/tasks/{ids['d']}")).json()  # a step is an ordinary task too
        assert (one["workflow_id"], one["step"]) == (body["id"], "d")


async def test_a_failing_step_cancels_what_runs_after_it(app: Litestar) -> None:
    async with serving(app) as client:
        body = (await client.post("/workflows", json=diamond(middle="boom"))).json()
        done = await final(client, body["id"])
        assert done["status"] == "FAILED"
        d = done["steps"][3]
        assert (d["status"], d["error"]) == (
            "CANCELLED",
            "cancelled: step 'b', which it runs after, is FAILED",
        )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"steps": []}, None),
        ({"steps": [{"name": "a", "type": "nope", "input_data": 1}]}, "step 'a'"),
        ({"steps": [{"name": "a", "type": "reverse", "input_data": 1}]}, "step 'a'"),
        ({"steps": [{"name": "a", "type": "reverse", "input_data": "x", "after": ["a"]}]}, "cycle"),
        ({"steps": [{"name": "a", "type": "reverse", "input_data": "x", "after": ["z"]}]}, "'z'"),
    ],
)
async def test_a_bad_workflow_is_a_422_and_stores_nothing(
    app: Litestar, body: dict[str, Any], detail: str | None
) -> None:
    async with serving(app) as client:
        refused = await client.post("/workflows", json=body)
        assert refused.status_code == 422, refused.text
        if detail:
            assert detail in refused.json()["detail"]
        assert (await client.get("/tasks")).json()["items"] == []


async def test_cancel_and_a_missing_workflow(app: Litestar) -> None:
    async with serving(app) as client:
        body = (
            await client.post(
                "/workflows",
                json={
                    "steps": [
                        {"name": "later", "type": "reverse", "input_data": "x"},
                        {"name": "after", "type": "reverse", "input_data": "y", "after": ["later"]},
                    ]
                },
            )
        ).json()
        cancelled = (await client.post(f"/workflows/{body['id']}/cancel")).json()
        assert cancelled["status"] in ("CANCELLED", "COMPLETED")  # the first step may have run already
        assert cancelled["steps"][1]["status"] == "CANCELLED"
        missing = await client.get("/workflows/999")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")


async def test_a_submit_runs_after_other_tasks(app: Litestar) -> None:
    async with serving(app) as client:
        first = (await client.post("/tasks/", json={"input_data": "ab"})).json()
        second = await client.post("/tasks/", json={"input_data": "cd", "after": [first["id"]]})
        assert second.status_code == 201
        assert second.json()["after"] == [first["id"]]
        for _ in range(200):
            if (await client.get(f"/tasks/{second.json()['id']}")).json()["status"] == "COMPLETED":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the second task never ran")
        missing = await client.post("/tasks/", json={"input_data": "x", "after": [999]})
        assert missing.status_code == 422
        assert "999" in missing.json()["detail"]
