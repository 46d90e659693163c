"""The per-owner submit limit: the limiter alone, then through the real ``/tasks`` routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import jwt
import pytest
from litestar import Litestar
from litestar.di import Provide

from taskcore import HandlerRegistry, register_builtins
from taskcore.adapters.memory import MemoryDatabase
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http.auth import TokenVerifier, jwt_middleware
from taskcore.entrypoints.http.problems import EXCEPTION_HANDLERS
from taskcore.entrypoints.http.rate_limit import OwnerRateLimiter, rate_limit_middleware
from taskcore.entrypoints.http.tasks_controller import TaskController, TaskEndpoints
from taskcore.entrypoints.lifecycle import open_resources
from taskcore.entrypoints.settings import load_settings

from .test_http import Client, serving

SECRET = "a-test-secret-that-is-long-enough-for-hs256!"
PROBLEM = "application/problem+json"
LIMIT = 3  # per minute: one slot frees every 20 s


class FakeClock:
    """Seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def bearer(sub: str) -> dict[str, str]:
    """Minted at import, which a full ``make test`` does long before this module's
    tests run (after the integration suite): a token that lasted ten minutes
    expired on the way (401 instead of 201). This one outlives any run."""
    claims = {"sub": sub, "exp": int(time.time()) + 30 * 86_400, "scope": "tasks:read tasks:write"}
    return {"authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


ALICE, BOB = bearer("alice"), bearer("bob")


def make_app(container: Container, clock: FakeClock, *, auth: bool = True) -> Litestar:
    """``create_app``'s HTTP stack (routes, problem handlers, auth) with the limit
    wired the way ``create_app`` wires it: inside the auth middleware."""

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with open_resources(container):
            yield

    def provide_tasks() -> TaskEndpoints:
        return TaskEndpoints(
            service=container.service(),
            listing=container.tasks(),
            watcher=container.watcher(),
            clock=container.clock(),
        )

    verifier = TokenVerifier(key=SECRET, algorithms=("HS256",))
    auth_middleware = [jwt_middleware(verifier, exclude=["^/docs"])] if auth else []
    return Litestar(
        route_handlers=[TaskController],
        dependencies={"tasks": Provide(provide_tasks, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        middleware=[*auth_middleware, rate_limit_middleware(LIMIT, clock=clock)],
        debug=False,
    )


@pytest.fixture
def container() -> Container:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    return build_container(load_settings({}), registry)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(container: Container, clock: FakeClock) -> AsyncIterator[Client]:
    async with serving(make_app(container, clock)) as client:
        yield client


async def submit(client: Client, headers: dict[str, str], path: str = "/tasks/") -> int:
    response = await client.post(path, json={"input_data": "x"}, headers=headers)
    return response.status_code


def stored(container: Container) -> int:
    database = container.database()
    assert isinstance(database, MemoryDatabase)
    return len(database.tasks)


async def test_the_submit_past_the_limit_is_429_problem_json_with_retry_after(
    client: Client, container: Container
) -> None:
    assert [await submit(client, ALICE) for _ in range(LIMIT)] == [201] * LIMIT
    response = await client.post("/tasks/", json={"input_data": "x"}, headers=ALICE)
    assert response.status_code == 429
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["retry-after"] == "20"
    problem = response.json()
    assert (problem["status"], problem["title"]) == (429, "Too Many Requests")
    assert "3 submissions per 60 s" in problem["detail"]
    assert stored(container) == LIMIT  # the refused submit stored nothing


async def test_retry_after_counts_down_to_the_next_free_slot(client: Client, clock: FakeClock) -> None:
    for _ in range(LIMIT):
        await submit(client, ALICE)
    clock.advance(12.5)
    response = await client.post("/tasks/", json={"input_data": "x"}, headers=ALICE)
    assert (response.status_code, response.headers["retry-after"]) == (429, "8")  # 7.5 s, rounded up


async def test_another_owner_is_unaffected(client: Client) -> None:
    for _ in range(LIMIT + 2):
        await submit(client, ALICE)
    assert [await submit(client, BOB) for _ in range(LIMIT)] == [201] * LIMIT
    assert await submit(client, BOB) == 429


async def test_reads_lists_and_other_posts_are_not_limited(client: Client) -> None:
    response = await client.post("/tasks/", json={"input_data": "x"}, headers=ALICE)
    task_id = response.json()["id"]
    for _ in range(LIMIT):
        await submit(client, ALICE)
    assert await submit(client, ALICE) == 429
    for _ in range(LIMIT * 3):
        assert (await client.get(f"/tasks/{task_id}", headers=ALICE)).status_code == 200
        assert (await client.get("/tasks/", headers=ALICE)).status_code == 200
        assert (await client.post(f"/tasks/{task_id}/cancel", headers=ALICE)).status_code in (200, 409)


async def test_the_path_without_its_slash_is_the_same_route_and_the_same_limit(client: Client) -> None:
    assert await submit(client, ALICE, "/tasks") == 201
    assert await submit(client, ALICE, "/tasks/") == 201
    assert await submit(client, ALICE, "/tasks") == 201
    assert await submit(client, ALICE, "/tasks") == 429


async def test_the_window_frees_up_again(client: Client, clock: FakeClock) -> None:
    for _ in range(LIMIT):
        await submit(client, ALICE)
    assert await submit(client, ALICE) == 429
    clock.advance(19.9)
    assert await submit(client, ALICE) == 429
    clock.advance(0.1)  # one slot every 60 / LIMIT s
    assert await submit(client, ALICE) == 201
    assert await submit(client, ALICE) == 429
    clock.advance(60)  # a whole idle window: the full burst again
    assert [await submit(client, ALICE) for _ in range(LIMIT + 1)] == [201] * LIMIT + [429]


async def test_unauthenticated_calls_are_401_and_use_no_slot(client: Client) -> None:
    for _ in range(LIMIT + 2):
        response = await client.post("/tasks/", json={"input_data": "x"})
        assert response.status_code == 401
    assert [await submit(client, ALICE) for _ in range(LIMIT)] == [201] * LIMIT


async def test_with_auth_off_everyone_is_the_one_anonymous_owner(
    container: Container, clock: FakeClock
) -> None:
    async with serving(make_app(container, clock, auth=False)) as client:
        assert [await submit(client, {}) for _ in range(LIMIT)] == [201] * LIMIT
        assert await submit(client, ALICE) == 429  # the token is not even read


def test_limiter_admits_a_burst_of_exactly_the_limit() -> None:
    clock = FakeClock()
    for limit, window in [(1, 60.0), (7, 60.0), (6000, 60.0), (3, 0.3)]:
        limiter = OwnerRateLimiter(limit, window, clock=clock)
        assert [limiter.acquire("k") for _ in range(limit)] == [0.0] * limit
        wait = limiter.acquire("k")
        assert wait == pytest.approx(window / limit)
        clock.advance(wait)
        assert limiter.acquire("k") == 0.0


def test_limiter_forgets_owners_once_their_bucket_is_full_again() -> None:
    clock = FakeClock()
    limiter = OwnerRateLimiter(2, 60.0, clock=clock)
    for owner in ("a", "b", "c"):
        limiter.acquire(owner)
    assert len(limiter) == 3
    clock.advance(30)
    limiter.acquire("d")
    limiter.acquire("d")
    assert len(limiter) == 4  # no sweep before a window has passed
    clock.advance(30)
    limiter.acquire("e")
    assert len(limiter) == 2  # a, b, c were full again; d still has a slot in use


@pytest.mark.parametrize(("limit", "window"), [(0, 60.0), (-1, 60.0), (5, 0.0)])
def test_limiter_rejects_a_meaningless_limit(limit: int, window: float) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        OwnerRateLimiter(limit, window)
