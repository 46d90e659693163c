"""``/dashboard`` and ``/stats`` through the HTTP API, on the memory adapters and looptime's fake
time: the app runs in the test's event loop (``serving``), the core on the loop's clock."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from taskcore import HandlerRegistry, register_builtins
from taskcore.adapters.memory import MemoryDatabase, MemoryQueue
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings

from .test_auth import SECRET, bearer, token
from .test_http import Client, on_loop_time, serving

pytestmark = pytest.mark.looptime
ADMIN = "tasks:read tasks:write tasks:admin"
DEPTH_MAX_AGE_S = 2.0  # StatsService's default


def registry() -> HandlerRegistry:
    handlers = HandlerRegistry()
    register_builtins(handlers, reverse_delay_s=0)

    @handlers.handler(max_attempts=1)
    async def explode(_: str) -> None:
        raise RuntimeError("handler bug")

    return handlers


def make_container(**settings: Any) -> Container:
    return on_loop_time(build_container(load_settings({}, **settings), registry()))


@pytest.fixture
def container() -> Container:
    return make_container()


@asynccontextmanager
async def open_api(container: Container) -> AsyncIterator[Client]:
    """Auth off: every caller sees everything."""
    async with serving(create_app(container, embedded_worker=True)) as client:
        yield client


@asynccontextmanager
async def jwt_api() -> AsyncIterator[Client]:
    container = make_container(jwt_secret=SECRET)
    async with serving(create_app(container, embedded_worker=True, default_auth="jwt")) as client:
        yield client


async def settled(client: Client, headers: dict[str, str], completed: int, failed: int) -> dict[str, object]:
    for _ in range(300):
        response = await client.get("/stats", headers=headers)
        assert response.status_code == 200, response.text
        stats: dict[str, object] = response.json()
        counts = stats["counts"]
        assert isinstance(counts, dict)
        if (counts["COMPLETED"], counts["FAILED"]) == (completed, failed):
            return stats
        await asyncio.sleep(0.01)
    raise AssertionError(f"never reached {completed} completed, {failed} failed: {stats}")


async def test_stats_with_auth_off_show_everything(container: Container) -> None:
    async with open_api(container) as client:
        await client.post("/tasks/", json={"input_data": "abc"})
        await client.post("/tasks/", json={"input_data": "x", "type": "explode", "tags": ["nightly"]})
        await settled(client, {}, completed=1, failed=1)
        # The queue is read at most every 2 s: the reading taken while both
        # tasks waited for the worker is kept, then read again.
        await asyncio.sleep(DEPTH_MAX_AGE_S)
        stats = await settled(client, {}, completed=1, failed=1)
        retried = await client.post(f"/tasks/{stats['failures'][0]['id']}/retry")  # type: ignore[index]

    assert stats["owner"] is None
    assert set(stats["counts"]) == {"PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"}  # type: ignore[arg-type]
    minutes = stats["minutes"]
    assert isinstance(minutes, list)
    assert len(minutes) == 15
    assert sum(m["completed"] for m in minutes) == 1
    assert minutes[-1]["run_p50_s"] is not None
    (failure,) = stats["failures"]  # type: ignore[misc]
    assert failure["error"] == "RuntimeError: handler bug"
    assert failure["attempts"] == failure["max_attempts"] == 1
    assert failure["tags"] == ["nightly"]  # the page shows them after the type
    assert stats["queue"] == {"ready": 0, "dead_letters": 0}
    (worker,) = stats["workers"]  # type: ignore[misc]
    assert re.fullmatch(r".+-\d+", worker["id"])
    assert stats["workers_seen_s"] == 30
    assert retried.status_code == 200


async def test_the_page_and_its_assets_are_served_from_here(container: Container) -> None:
    async with open_api(container) as client:
        page = await client.get("/dashboard")
        script = await client.get("/dashboard/dashboard.js")
        style = await client.get("/dashboard/dashboard.css")
        other = await client.get("/dashboard/other.js")
        browser = await client.get("/dashboard/tasks.js")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    html = page.text
    # nothing from another origin: every src and href is local (or data:)
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("/dashboard/", "data:", "#/")), url
    assert script.headers["content-type"].startswith("text/javascript")
    assert "/stats" in script.text
    assert "/queues" in script.text
    # the Queues panel: hidden until GET /queues answers, a header for each column, labelled buttons
    assert '<section id="queues-panel" class="panel" aria-labelledby="queues-title" hidden>' in html
    queues_panel = html.split('id="queues-panel"')[1].split("</section>")[0]
    assert queues_panel.count('<th scope="col"') == 8
    # the Schedules panel: hidden until GET /schedules lists one
    assert '<section id="schedules-panel" class="panel" aria-labelledby="schedules-title" hidden>' in html
    assert "/schedules" in script.text
    assert "aria-label" in script.text
    assert "http://" not in script.text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in script.text
    # the task browser: its own script, served the same way, that never writes markup it was given
    assert browser.headers["content-type"].startswith("text/javascript")
    assert browser.headers["content-security-policy"] == policy
    assert '<script src="/dashboard/tasks.js" defer></script>' in html
    for route in ("/tasks?", "/tasks/${id}/detail", "/workflows/", "/${action}"):
        assert route in browser.text, route
    for script_text in (script.text, browser.text):
        assert "innerHTML" not in script_text
        assert "insertAdjacentHTML" not in script_text
        assert "https://" not in script_text
    assert style.headers["content-type"].startswith("text/css")
    assert "url(" not in style.text
    assert other.status_code == 404


async def test_the_page_is_public_but_its_data_needs_a_token() -> None:
    async with jwt_api() as client:
        assert (await client.get("/dashboard")).status_code == 200
        assert (await client.get("/dashboard/dashboard.js")).status_code == 200
        refused = await client.get("/stats")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert (await client.get("/stats", headers=bearer(token(scope="tasks:write")))).status_code == 403


async def test_a_caller_sees_the_stats_of_its_own_tasks_and_an_admin_all() -> None:
    alice, bob, admin = bearer(token("alice")), bearer(token("bob")), bearer(token("ops", scope=ADMIN))
    async with jwt_api() as client:
        await client.post("/tasks/", json={"input_data": "abc"}, headers=alice)
        await client.post("/tasks/", json={"input_data": "x", "type": "explode"}, headers=bob)

        everything = await settled(client, admin, completed=1, failed=1)
        mine = await settled(client, alice, completed=1, failed=0)
        theirs = await settled(client, bob, completed=0, failed=1)

    assert everything["owner"] is None
    assert everything["queue"] is not None
    assert everything["workers"]
    assert (mine["owner"], mine["failures"], mine["queue"], mine["workers"]) == ("alice", [], None, None)
    assert [f["error"] for f in theirs["failures"]] == ["RuntimeError: handler bug"]  # type: ignore[attr-defined]


async def test_the_queues_panel_is_for_admins_and_others_get_a_403_it_hides_on() -> None:
    """The page asks ``/queues`` beside ``/stats``: an admin gets the queues
    and can pause one; a caller without ``tasks:admin`` gets its stats and a
    403 problem, which the page takes as "no panel"."""
    alice, admin = bearer(token("alice")), bearer(token("ops", scope=ADMIN))
    async with jwt_api() as client:
        assert (await client.get("/stats", headers=alice)).status_code == 200
        refused = await client.get("/queues", headers=alice)
        listed = await client.get("/queues", headers=admin)
        paused = await client.post("/queues/default/pause", headers=admin)
        after = await client.get("/queues", headers=admin)
        resumed = await client.post("/queues/default/resume", headers=admin)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    (queue,) = listed.json()["items"]
    assert set(queue) == {"name", "paused", "waiting", "running", "scheduled", "ready", "dead_letters"}
    assert (queue["name"], queue["paused"]) == ("default", False)
    assert paused.json() == after.json()["items"][0] == {**queue, "paused": True}
    assert resumed.json() == {**queue, "paused": False}


async def test_stats_are_documented_with_their_problems(container: Container) -> None:
    async with open_api(container) as client:
        schema = (await client.get("/docs/openapi.json")).json()
    assert "/dashboard" not in schema["paths"]
    operation = schema["paths"]["/stats"]["get"]
    assert set(operation["responses"]) == {"200", "401", "403", "503"}
    for code in ("401", "403", "503"):
        assert set(operation["responses"][code]["content"]) == {"application/problem+json"}
    counts = schema["components"]["schemas"]["StatusCounts"]
    assert set(counts["required"]) == {"PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"}


async def test_stats_are_503_while_the_database_is_down(container: Container) -> None:
    database = container.database()
    assert isinstance(database, MemoryDatabase)
    async with open_api(container) as client:
        database.available = False
        response = await client.get("/stats")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_unknown_broker_depth_is_null_not_an_error(container: Container) -> None:
    queue = container.queue()
    assert isinstance(queue, MemoryQueue)
    async with open_api(container) as client:
        queue.available = False
        response = await client.get("/stats")
    assert response.status_code == 200
    assert response.json()["queue"] == {"ready": None, "dead_letters": None}
