"""``/health/live`` and ``/health/ready`` for orchestrators and load balancers.

Liveness says the process serves HTTP. Readiness checks each dependency with a
short timeout and reports it by name. Redis and a PostgreSQL read replica are
optional at run time (reads fall back to PostgreSQL, to the primary), so their
outages are reported but do not make the API unready.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

from taskcore.entrypoints.lifecycle import Adapter
from taskcore.errors import TaskcoreError

CHECK_TIMEOUT_S = 1.0
OPTIONAL = frozenset({"redis", "memory-cache", "postgres-replica"})


class Dependencies:
    """The adapters to check, by service name (a plain class so Litestar's
    dependency validation can check it with ``isinstance``)."""

    def __init__(self, adapters: dict[str, Adapter]) -> None:
        self.adapters = adapters


class Live(msgspec.Struct):
    status: Literal["ok"] = "ok"


class Ready(msgspec.Struct):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


# Pings given up on, still being cancelled: referenced until they end.
_abandoned: set[asyncio.Future[None]] = set()


def _forget(ping: asyncio.Future[None]) -> None:
    _abandoned.discard(ping)
    if not ping.cancelled():
        ping.exception()  # retrieved, so asyncio does not log it as lost


async def check(adapter: Adapter) -> str:
    """``ok`` or ``unavailable: <reason>``, within ``CHECK_TIMEOUT_S``. A ping
    that does not answer in time is cancelled but not waited for: a driver
    can take seconds to give up on a silent connection (psycopg asks the
    server to cancel the query, through the same silent network), and a probe
    must answer now."""
    ping = asyncio.ensure_future(adapter.ping())
    try:
        done, _ = await asyncio.wait({ping}, timeout=CHECK_TIMEOUT_S)
    except asyncio.CancelledError:
        ping.cancel()
        raise
    if not done:
        ping.cancel()
        _abandoned.add(ping)
        ping.add_done_callback(_forget)
        return f"unavailable: no answer within {CHECK_TIMEOUT_S:g} s"
    exc = ping.exception()
    if isinstance(exc, TimeoutError):
        return f"unavailable: no answer within {CHECK_TIMEOUT_S:g} s"
    if isinstance(exc, TaskcoreError):
        return f"unavailable: {exc}"
    if exc is not None:
        raise exc
    return "ok"


async def readiness(adapters: dict[str, Adapter]) -> Ready:
    results = await asyncio.gather(*(check(a) for a in adapters.values()))
    checks = dict(zip(adapters, results, strict=True))
    ready = all(result == "ok" for name, result in checks.items() if name not in OPTIONAL)
    return Ready(status="ready" if ready else "unavailable", checks=checks)


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", operation_id="getLiveness", summary="Liveness")
    async def live(self) -> Live:
        return Live()

    @get(
        "/ready",
        operation_id="getReadiness",
        summary="Readiness, with each dependency by name",
        responses={
            503: ResponseSpec(data_container=Ready, description="A required dependency is unavailable")
        },
    )
    async def ready(self, dependencies: NamedDependency[Dependencies]) -> Response[Ready]:
        report = await readiness(dependencies.adapters)
        return Response(report, status_code=200 if report.status == "ready" else 503)
