"""Tags and metadata against the real services: tagged tasks, a tagged batch
and a tagged workflow through a real ``taskcore api`` and ``taskcore worker``,
then through taskcore as a library (a plain submit, a batch, one inside the
application's transaction, a workflow); each run by the worker, kept by the
row (and the cache, read back once final), and found by a listing's tags.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from taskcore import TaskStatus
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.lifecycle import open_resources
from taskcore.entrypoints.loading import load_registry
from taskcore.entrypoints.settings import load_settings
from taskcore.model.batch import TaskRequest
from taskcore.model.query import TaskQuery
from taskcore.model.workflows import StepSpec

from .conftest import Stack
from .test_queues import ready_worker
from .test_workflows import run

pytestmark = pytest.mark.integration

APP = "tests.integration.e2e.workflow_handlers:registry"


def listed(stack: Stack, *tags: str, **query: Any) -> list[int]:
    params: list[tuple[str, Any]] = [("tag", tag) for tag in tags] + list(query.items())
    answer = httpx.get(f"{stack.base_url}/tasks", params=params, timeout=10)
    assert answer.status_code == 200, answer.text
    return [task["id"] for task in answer.json()["items"]]


def test_tagged_tasks_batches_and_workflows_over_http(stack: Stack) -> None:
    stack.env["TASKCORE_APP"] = APP
    stack.start_api()
    ready_worker(stack)
    one = stack.submit("abc", tags=["customer:42", "nightly", "customer:42"], metadata={"order": 7})
    assert (one["tags"], one["metadata"]) == (["customer:42", "nightly"], {"order": 7})
    batch = httpx.post(
        f"{stack.base_url}/tasks/batch",
        json={
            "items": [
                {"input_data": "de", "tags": ["customer:42"], "metadata": {"n": 1}},
                {"input_data": "fg", "tags": ["customer:7"], "unique_key": "fg"},
            ]
        },
        timeout=10,
    )
    assert batch.status_code == 201, batch.text
    second, other = batch.json()["items"]
    workflow = {
        "name": "tagged",
        "tags": ["customer:42", "flow"],
        "metadata": {"run": 3, "who": "flow"},
        "steps": [
            {"name": "a", "type": "step", "input_data": "a", "tags": ["first"], "metadata": {"who": "a"}},
            {"name": "b", "type": "step", "input_data": "b", "after": ["a"]},
        ],
    }
    done = run(stack, workflow)
    assert done["status"] == "COMPLETED"
    a, b = done["steps"]
    assert (a["tags"], a["metadata"]) == (["customer:42", "flow", "first"], {"run": 3, "who": "a"})
    assert (b["tags"], b["metadata"]) == (["customer:42", "flow"], {"run": 3, "who": "flow"})

    for task in (one, second, other):
        final = stack.wait_final(task["id"])  # the cache's copy, once the worker wrote it
        assert final["status"] == "COMPLETED"
        assert (final["tags"], final["metadata"]) == (task["tags"], task["metadata"])
    assert listed(stack, "customer:42") == [b["id"], a["id"], second["id"], one["id"]]
    assert listed(stack, "customer:42", "nightly") == [one["id"]]
    assert listed(stack, "customer:42", type="step", status="COMPLETED") == [b["id"], a["id"]]
    assert listed(stack, "customer:42", limit=3)[-1] == second["id"]
    first_page = httpx.get(f"{stack.base_url}/tasks", params={"tag": "customer:42", "limit": 3}, timeout=10)
    cursor = first_page.json()["next_cursor"]
    assert listed(stack, "customer:42", limit=3, cursor=cursor) == [one["id"]]
    assert listed(stack, "customer:7") == [other["id"]]
    rows = stack.sql("SELECT tags, metadata FROM tasks WHERE id = %s", one["id"])
    assert rows == [(["customer:42", "nightly"], {"order": 7})]
    refused = httpx.post(
        f"{stack.base_url}/tasks/", json={"input_data": "x", "tags": ["no spaces"]}, timeout=10
    )
    assert refused.status_code == 422


@pytest.fixture
async def library(stack: Stack) -> AsyncIterator[Container]:
    """taskcore as a library in this process, on the stack's services."""
    stack.env["TASKCORE_APP"] = APP
    settings = load_settings(stack.env)
    container = build_container(settings, load_registry(APP, reverse_delay_s=0))
    async with open_resources(container):
        yield container


async def test_tagged_tasks_through_the_library(stack: Stack, library: Container) -> None:
    ready_worker(stack)
    service = library.service()
    plain = await service.submit("reverse", "abc", tags=["lib", "plain"], metadata={"k": "v"})
    assert (plain.tags, plain.metadata) == (("lib", "plain"), {"k": "v"})
    batch = await service.submit_many([TaskRequest(type="reverse", input="de", tags=("lib", "batch"))])
    async with (
        await psycopg.AsyncConnection.connect(stack.database_url) as connection,
        connection.transaction(),
    ):
        within = await service.submit("reverse", "fg", tags=["lib", "tx"], connection=connection)
    flow = await library.workflows().submit(
        [StepSpec(name="a", type="step", input="a", tags=("a",))], tags=["lib", "flow"], metadata={"run": 1}
    )
    ids = [plain.id, batch[0].task.id, within.id, flow.steps[0].id]
    deadline = asyncio.get_running_loop().time() + 60
    for task_id in ids:
        while (task := await service.get(task_id, from_database=True)).status is not TaskStatus.COMPLETED:
            assert asyncio.get_running_loop().time() < deadline, task
            await asyncio.sleep(0.1)
    found = await library.tasks().find(TaskQuery(tags=("lib",)))
    assert [task.id for task in found] == sorted(ids, reverse=True)
    assert [(task.tags, task.metadata) for task in found] == [
        (("lib", "flow", "a"), {"run": 1}),
        (("lib", "tx"), {}),
        (("lib", "batch"), {}),
        (("lib", "plain"), {"k": "v"}),
    ]
    assert [task.id for task in await library.tasks().find(TaskQuery(tags=("lib", "tx")))] == [within.id]
