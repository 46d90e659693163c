"""``/schedules`` over HTTP: creating, reading, pausing, resuming and
deleting; what a create refuses (422) and who may do what. The app runs an
embedded worker whose scheduler fires on fake loop time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from taskcore import HandlerRegistry, register_builtins
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings

from .test_auth import SECRET, bearer, token
from .test_http import eventually, on_loop_time, serving

Client = AsyncTestClient  # type: ignore[type-arg]

VIEW_FIELDS = {
    "name", "type", "cron", "timezone", "every_s", "queue", "priority", "catch_up", "catch_up_limit",
    "owner", "system", "paused", "retired_at", "next_fire_at", "last_fire_at", "error", "created_at",
    "updated_at",
}  # fmt: skip


def registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)

    @registry.periodic("0 3 * * *", timezone="Europe/Berlin", name="nightly")
    async def cleanup(_: None) -> None: ...

    return registry


@pytest.mark.looptime
async def test_a_schedule_fires_and_is_read_paused_resumed_and_deleted() -> None:
    container = on_loop_time(build_container(load_settings({}, schedule_poll_s=1), registry()))
    async with serving(create_app(container, embedded_worker=True)) as client:
        made = await client.post(
            "/schedules", json={"name": "tick", "type": "reverse", "input_data": "abc", "every_s": 2}
        )
        assert made.status_code == 201, made.text
        view = made.json()
        assert set(view) == VIEW_FIELDS
        assert made.headers["location"] == "/schedules/tick"
        assert (view["every_s"], view["timezone"], view["catch_up"], view["catch_up_limit"]) == (
            2,
            "UTC",
            "skip",
            100,
        )
        assert (view["owner"], view["system"], view["paused"], view["last_fire_at"]) == (
            "anonymous",
            False,
            False,
            None,
        )

        async def fired() -> int:
            listed = (await client.get("/tasks/", params={"type": "reverse"})).json()["items"]
            return len(listed)

        await eventually(lambda: len(container.database().tasks) >= 3, within=30)
        assert await fired() >= 3
        tick = (await client.get("/schedules/tick")).json()
        assert tick["last_fire_at"] is not None
        assert tick["next_fire_at"] > tick["last_fire_at"]
        names = [s["name"] for s in (await client.get("/schedules")).json()["items"]]
        assert names == ["nightly", "tick"]  # the code's, declared by the worker, and the caller's

        paused = await client.post("/schedules/tick/pause")
        assert paused.status_code == 200
        assert paused.json()["paused"]
        count = len(container.database().tasks)
        await asyncio.sleep(10)
        assert len(container.database().tasks) == count
        resumed = await client.post("/schedules/tick/resume")
        assert resumed.status_code == 200
        assert not resumed.json()["paused"]
        await eventually(lambda: len(container.database().tasks) > count, within=30)

        assert (
            await client.post(
                "/schedules", json={"name": "tick", "type": "reverse", "input_data": "x", "every_s": 2}
            )
        ).status_code == 409
        assert (await client.delete("/schedules/nightly")).status_code == 409
        assert (await client.delete("/schedules/tick")).status_code == 204
        assert (await client.delete("/schedules/tick")).status_code == 404
        assert (await client.get("/schedules/tick")).status_code == 404
        assert (await client.post("/schedules/tick/pause")).status_code == 404


@pytest.fixture
async def plain() -> AsyncIterator[Client]:
    container = build_container(load_settings({}), registry())
    async with AsyncTestClient(create_app(container)) as client:
        yield client


GOOD = {"name": "ok", "type": "reverse", "input_data": "abc"}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({**GOOD, "cron": "61 * * * *"}, "cron"),
        ({**GOOD, "cron": "* * *"}, "cron"),
        ({**GOOD, "cron": "* * * * *", "every_s": 5}, "either cron or every_s"),
        (GOOD, "either cron or every_s"),
        ({**GOOD, "type": "nope", "every_s": 5}, "nope"),
        ({**GOOD, "every_s": 5, "timezone": "Mars/Olympus"}, "time zone"),
        ({**GOOD, "cron": "* * * * *", "timezone": "../etc/passwd"}, "time zone"),
        ({**GOOD, "input_data": 5, "every_s": 5}, "invalid input"),
        ({**GOOD, "every_s": 5, "queue": "nowhere"}, "unknown queue"),
        ({**GOOD, "every_s": 0}, None),
        ({**GOOD, "every_s": 5, "catch_up": "sometimes"}, None),
        ({**GOOD, "every_s": 5, "catch_up_limit": 0}, None),
        ({**GOOD, "every_s": 5, "priority": 10}, None),
        ({**GOOD, "name": "no spaces", "every_s": 5}, None),
        ({**GOOD, "every_s": 5, "extra": 1}, None),
    ],
)
async def test_what_a_create_refuses_is_a_422(
    plain: Client, body: dict[str, Any], detail: str | None
) -> None:
    answer = await plain.post("/schedules", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    if detail is not None:
        assert detail in answer.json()["detail"]
    assert (await plain.get("/schedules")).json()["items"] == []


async def test_options_lists_every_method(plain: Client) -> None:
    answer = await plain.options("/schedules")
    assert set(answer.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    one = await plain.options("/schedules/any")
    assert set(one.headers["allow"].replace(" ", "").split(",")) >= {"GET", "DELETE"}


async def test_schedules_belong_to_their_owner_and_the_codes_are_for_admins_to_change() -> None:
    container = build_container(load_settings({}, jwt_secret=SECRET), registry())
    async with AsyncTestClient(create_app(container, default_auth="jwt")) as authed:
        await container.scheduler().declare()  # what each worker does as it starts
        alice, bob = bearer(token("alice")), bearer(token("bob"))
        reader = bearer(token("carol", scope="tasks:read"))
        admin = bearer(token("root", scope="tasks:admin"))
        body = {"name": "alices", "type": "reverse", "input_data": "abc", "every_s": 60}
        assert (await authed.post("/schedules", json=body, headers=reader)).status_code == 403
        made = await authed.post("/schedules", json=body, headers=alice)
        assert made.status_code == 201
        assert made.json()["owner"] == "alice"

        async def names(headers: dict[str, str]) -> list[str]:
            return [s["name"] for s in (await authed.get("/schedules", headers=headers)).json()["items"]]

        assert await names(bob) == ["nightly"]
        assert await names(alice) == await names(admin) == ["alices", "nightly"]
        assert (await authed.get("/schedules/alices", headers=bob)).status_code == 404
        assert (await authed.get("/schedules/nightly", headers=bob)).json()["system"]
        assert (await authed.post("/schedules/alices/pause", headers=bob)).status_code == 404
        assert (await authed.delete("/schedules/alices", headers=bob)).status_code == 404
        assert (await authed.post("/schedules/alices/pause", headers=reader)).status_code == 403
        assert (await authed.post("/schedules/nightly/pause", headers=alice)).status_code == 403
        assert (await authed.post("/schedules/nightly/pause", headers=admin)).json()["paused"]
        assert (await authed.post("/schedules/alices/pause", headers=admin)).json()["paused"]
        assert (await authed.delete("/schedules/alices", headers=alice)).status_code == 204
