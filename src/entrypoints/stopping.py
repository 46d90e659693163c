"""Stopping a process before it has anything to drain.

A worker or API still waiting for its services at start-up must end at once
with exit 0 on SIGTERM or SIGINT, as a drain does once it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from taskcore.errors import TaskcoreError

T = TypeVar("T")


class StartupStopped(TaskcoreError):
    """Asked to stop while waiting for the services at start-up: nothing was started."""


class StopRequest:
    """SIGTERM or SIGINT, for the phase before a process has anything to drain.

    While a process still waits for its services, a stop must end it at once
    with exit 0, as a drain does later. The signal handler calls ``request``;
    start-up (``with_retries``) races every attempt and backoff against it.
    ``request`` may be called from a plain signal handler (uvicorn's), which
    can interrupt the event loop anywhere, so it only schedules the change.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def attach(self) -> None:
        """Bind to the running loop: call from the process's main coroutine."""
        self._loop = asyncio.get_running_loop()

    def request(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self._event.set()
        else:
            loop.call_soon_threadsafe(self._event.set)

    async def unless_requested(self, awaitable: Awaitable[T], what: str) -> T:
        """``awaitable``'s result, or ``StartupStopped`` (it cancelled) if a stop comes first."""
        work = asyncio.ensure_future(awaitable)
        halt = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({work, halt}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if work.cancelled():
            raise StartupStopped(f"stopped while {what}")
        return work.result()
