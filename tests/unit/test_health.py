"""``/health/ready`` names each dependency, and answers within its short timeout."""

from __future__ import annotations

import asyncio

import pytest

from taskcore import HandlerRegistry, register_builtins
from taskcore.adapters.memory import MemoryDatabase
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.http.health_controller import CHECK_TIMEOUT_S, readiness
from taskcore.entrypoints.settings import load_settings
from taskcore.errors import RepositoryUnavailable

from .test_http import loop_time, on_loop_time, serving

pytestmark = pytest.mark.looptime


class Adapter:
    """An adapter whose ping answers, fails, or hangs and then takes its time to give up."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.gave_up = asyncio.Event()

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        if self.behaviour == "fails":
            raise RepositoryUnavailable("connection refused")
        if self.behaviour == "hangs":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await asyncio.shield(asyncio.sleep(2))  # a driver cancelling through a silent network
                self.gave_up.set()
                raise


async def test_each_dependency_is_reported_by_name() -> None:
    report = await readiness(
        {"postgres": Adapter("fails"), "redis": Adapter("answers"), "rabbitmq": Adapter("answers")}
    )
    assert report.status == "unavailable"
    assert report.checks == {"postgres": "unavailable: connection refused", "redis": "ok", "rabbitmq": "ok"}


async def test_a_silent_dependency_is_named_within_the_timeout() -> None:
    silent = Adapter("hangs")
    started = loop_time()
    report = await readiness({"postgres": Adapter("answers"), "rabbitmq": silent})
    took = loop_time() - started
    assert report.checks["rabbitmq"] == f"unavailable: no answer within {CHECK_TIMEOUT_S:g} s"
    assert report.status == "unavailable"
    # At the timeout, not after the driver's 2 s cancellation too.
    assert took == pytest.approx(CHECK_TIMEOUT_S, abs=0.01)
    assert not silent.gave_up.is_set()
    await asyncio.wait_for(silent.gave_up.wait(), 5)  # it finishes on its own
    assert loop_time() - started == pytest.approx(CHECK_TIMEOUT_S + 2, abs=0.01)


async def test_only_redis_is_optional() -> None:
    report = await readiness({"postgres": Adapter("answers"), "redis": Adapter("fails")})
    assert report.status == "ready"
    assert report.checks["redis"].startswith("unavailable")


async def test_the_endpoint_names_a_stopped_dependency() -> None:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    container = on_loop_time(build_container(load_settings({}), registry))
    async with serving(create_app(container)) as client:
        assert (await client.get("/health/ready")).status_code == 200
        database = container.database()
        assert isinstance(database, MemoryDatabase)
        database.available = False
        response = await client.get("/health/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["memory-repository"].startswith("unavailable"), checks
    assert checks["memory-queue"] == "ok"
