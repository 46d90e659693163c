"""``GET /tasks/{id}/detail``: a task with its input and its attempts, for the dashboard's task page.

On looptime's fake time with the app in the test's event loop (``serving``,
``on_loop_time`` from test_http.py), so a retry's backoff passes at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from taskcore import HandlerRegistry
from taskcore.config import RetryPolicy
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings

from .test_http import on_loop_time, serving

pytestmark = pytest.mark.looptime


def make_app() -> Any:
    registry = HandlerRegistry()
    failures: dict[str, int] = {}

    @registry.handler(max_attempts=3, retry=RetryPolicy(base_s=1))
    async def wobbly(data: dict[str, Any]) -> str:
        """Fails ``fail`` times for its ``key``, then returns it."""
        key = str(data["key"])
        failures[key] = failures.get(key, 0) + 1
        if failures[key] <= int(data["fail"]):
            raise RuntimeError(f"<b>failure {failures[key]}</b> of {key}")
        return key

    container = on_loop_time(build_container(load_settings({}), registry))
    return create_app(container, embedded_worker=True)


async def test_the_detail_has_the_input_owner_and_each_attempt_from_claim_to_verdict() -> None:
    async with serving(make_app()) as client:
        submitted = await client.post(
            "/tasks/", json={"type": "wobbly", "input_data": {"key": "<img src=x>", "fail": 1}}
        )
        task_id = submitted.json()["id"]
        done = (await client.get(f"/tasks/{task_id}", params={"wait": 30})).json()
        assert done["status"] == "COMPLETED"

        response = await client.get(f"/tasks/{task_id}/detail")
        assert response.status_code == 200
        detail = response.json()

    plain = {key: value for key, value in detail.items() if key in done}
    assert plain == done  # everything GET /tasks/{id} says, and more:
    assert detail["input_data"] == {"key": "<img src=x>", "fail": 1}
    assert detail["owner"] == "anonymous"
    assert detail["lease_until"] is None
    log = detail["attempt_log"]
    assert [(a["number"], a["outcome"]) for a in log] == [(1, "FAILED"), (2, "COMPLETED")]
    assert log[0]["error"] == "RuntimeError: <b>failure 1</b> of <img src=x>"
    assert log[1]["error"] is None
    times = [datetime.fromisoformat(log[0]["claimed_at"]), datetime.fromisoformat(log[0]["ended_at"])]
    times += [datetime.fromisoformat(log[1]["claimed_at"]), datetime.fromisoformat(log[1]["ended_at"])]
    assert times == sorted(times)
    assert detail["started_at"] == log[1]["claimed_at"]
    assert datetime.fromisoformat(done["created_at"]) <= times[0]


async def test_an_unknown_task_has_no_detail() -> None:
    async with serving(make_app()) as client:
        response = await client.get("/tasks/999/detail")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "task 999 not found"
