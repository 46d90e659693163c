"""Ports of named queues: pausing them, and counting their tasks.

A paused queue is a row in the database that every claim reads, so no task of
it starts on any worker once the pause is stored; the workers also stop
taking its wake-ups (which stay at the broker) when they next look, which is
what keeps them from spinning on wake-ups they may not run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from taskcore.model.queues import QueueLoad


class QueueSwitches(Protocol):
    async def pause(self, queue: str, at: datetime) -> bool:
        """Pause ``queue`` (durably); ``False`` if it was paused already."""
        ...

    async def resume(self, queue: str, at: datetime) -> bool:
        """Resume ``queue``; ``False`` if it was not paused."""
        ...

    async def paused(self) -> frozenset[str]:
        """The queues paused now."""
        ...


class QueueLoads(Protocol):
    async def loads(self, now: datetime) -> dict[str, QueueLoad]:
        """Each queue with a PENDING or PROCESSING task, counted as of ``now``;
        a queue with none may be left out."""
        ...
