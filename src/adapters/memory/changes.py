"""An in-process change feed: every subscriber gets its own queue.

``available = False`` behaves like a feed that went away: announcing fails and
every live subscription ends with ``ChangeFeedUnavailable``, as a dropped Redis
connection would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from taskcore.errors import ChangeFeedUnavailable
from taskcore.model.changes import TaskChange

_LOST = None  # put in a subscriber's queue when the feed goes away


class MemoryChangeFeed:
    def __init__(self) -> None:
        self.announced: list[TaskChange] = []
        self._available = True
        self._subscribers: set[asyncio.Queue[TaskChange | None]] = set()

    @property
    def available(self) -> bool:
        return self._available

    @available.setter
    def available(self, value: bool) -> None:
        self._available = value
        if not value:
            for queue in self._subscribers:
                queue.put_nowait(_LOST)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def open(self) -> None:
        """Nothing to connect; present so every adapter has the same lifecycle."""

    async def close(self) -> None:
        """Nothing to release."""

    async def ping(self) -> None:
        if not self._available:
            raise ChangeFeedUnavailable("memory change feed switched off")

    async def announce(self, changes: Sequence[TaskChange]) -> None:
        await self.ping()
        self.announced.extend(changes)
        for queue in self._subscribers:
            for change in changes:
                queue.put_nowait(change)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[TaskChange]]:
        await self.ping()
        queue: asyncio.Queue[TaskChange | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield self._receive(queue)
        finally:
            self._subscribers.discard(queue)

    @staticmethod
    async def _receive(queue: asyncio.Queue[TaskChange | None]) -> AsyncIterator[TaskChange]:
        while True:
            change = await queue.get()
            if change is _LOST:
                raise ChangeFeedUnavailable("memory change feed switched off")
            assert change is not None
            yield change
