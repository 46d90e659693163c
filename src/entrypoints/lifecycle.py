"""Opening and closing the container's resources around a process's life."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from taskcore.entrypoints.container import Container


@asynccontextmanager
async def open_resources(container: Container) -> AsyncIterator[Container]:
    started = container.init_resources()
    if inspect.isawaitable(started):
        await started
    try:
        yield container
    finally:
        stopped = container.shutdown_resources()
        if inspect.isawaitable(stopped):
            await stopped
