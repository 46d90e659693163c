"""Opening and closing a process's adapters, with retries while services come up.

In a compose stack the API and workers often start before PostgreSQL or
RabbitMQ accept connections, so each service is retried with exponential
backoff (``TASKCORE_STARTUP_ATTEMPTS``), saying which one we are waiting for.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Protocol, TypeVar

from taskcore.adapters.postgres import PostgresDatabase, ReadReplica, migrate
from taskcore.entrypoints.container import Container
from taskcore.entrypoints.settings import Settings
from taskcore.entrypoints.stopping import StopRequest
from taskcore.errors import ServiceUnavailable

log = logging.getLogger("taskcore.startup")

T = TypeVar("T")

MAX_BACKOFF_S = 10.0


class Adapter(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...


def dependencies(container: Container) -> dict[str, Adapter]:
    """The process's adapters by the service name operators know them by; a
    PostgreSQL read replica on its own line, ``postgres-replica``."""
    settings = container.settings()
    database = container.database()
    adapters: dict[str, Adapter] = {
        "postgres" if settings.database_url else "memory-repository": database,
        "redis" if settings.redis_url else "memory-cache": container.cache(),
        "rabbitmq" if settings.amqp_url else "memory-queue": container.queue(),
    }
    if isinstance(database, PostgresDatabase) and database.has_replica:
        adapters["postgres-replica"] = ReadReplica(database)
    return adapters


async def with_retries(
    name: str, action: Callable[[], Awaitable[T]], settings: Settings, stop: StopRequest | None = None
) -> T:
    stop = stop or StopRequest()
    attempts = settings.startup_attempts
    for attempt in range(1, attempts + 1):
        try:
            return await stop.unless_requested(action(), f"connecting to {name}")
        except ServiceUnavailable as exc:
            if attempt == attempts:
                log.error("%s unavailable after %d attempts: %s", name, attempts, exc)
                raise
            delay = min(MAX_BACKOFF_S, settings.startup_backoff_s * 2 ** (attempt - 1))
            log.warning(
                "waiting for %s (attempt %d/%d, next in %.1f s): %s", name, attempt, attempts, delay, exc
            )
            await stop.unless_requested(asyncio.sleep(delay), f"waiting for {name}")
    raise AssertionError("unreachable")


async def migrate_database(settings: Settings, stop: StopRequest | None = None) -> list[str]:
    if not settings.database_url:
        return []
    url = settings.database_url
    applied = await with_retries("postgres", lambda: migrate(url), settings, stop)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied


@asynccontextmanager
async def open_resources(container: Container) -> AsyncIterator[Container]:
    settings = container.settings()
    stop = container.stop_request()
    async with AsyncExitStack() as stack:
        if settings.migrate_on_start:
            await migrate_database(settings, stop)
        for name, adapter in dependencies(container).items():
            await with_retries(name, adapter.open, settings, stop)
            stack.push_async_callback(adapter.close)
        # Not a dependency of its own: it shares Redis, and waiting readers
        # manage without it (they re-read the database).
        feed = container.changes()
        await feed.open()
        stack.push_async_callback(feed.close)
        started = container.init_resources()
        if inspect.isawaitable(started):
            await started
        stack.push_async_callback(_shutdown_resources, container)
        # Run before the adapters close: buffered confirmations and change
        # notifications are sent.
        stack.push_async_callback(container.dispatcher().aclose)
        stack.push_async_callback(container.announcer().aclose)
        stack.push_async_callback(container.webhook_poster().aclose)
        yield container


async def _shutdown_resources(container: Container) -> None:
    stopped = container.shutdown_resources()
    if inspect.isawaitable(stopped):
        await stopped
