"""The one writer of task transitions.

Every change of a task's state leaves the process the same way: persisted
with the version check, written to the cache, announced to waiting readers,
and, when the task is PENDING again, its wake-up published (the row is the
outbox, so a publish that fails is the sweeper's to repeat). ``TaskService``,
``TaskProcessor`` and ``Sweeper`` decide *which* transition; this decides how
it is written, in one place.
"""

from __future__ import annotations

import asyncio

from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.ports import TransitionStore
from taskcore.transitions.dispatch import Dispatcher
from taskcore.transitions.status_cache import StatusCache


class Transitions:
    def __init__(self, *, store: TransitionStore, cache: StatusCache, dispatcher: Dispatcher) -> None:
        self._store = store
        self._cache = cache
        self._dispatcher = dispatcher

    @property
    def cache(self) -> StatusCache:
        return self._cache

    async def record(self, task: Task, *, publish: bool = True) -> bool:
        """Persist ``task``'s transition; ``False`` (and nothing else happens)
        when the stored row moved on meanwhile. ``publish=False`` is for a
        caller that gives back the message it holds: that message is the
        task's wake-up already."""
        if not await self._store.save(task):
            return False
        await self._cache.remember(task)
        if publish and task.status is TaskStatus.PENDING:
            await self._dispatcher.dispatch(task)
        return True

    async def created(self, task: Task) -> None:
        """A task was just stored as PENDING: its wake-up and its write-through
        go out together. Both only follow the commit and neither needs the
        other (a worker's newer state wins in the cache whichever lands
        first), so the caller waits for the slower round trip, not their sum.
        Nobody waits on a task whose id is not out yet: nothing to announce."""
        caching = asyncio.ensure_future(self._cache.remember(task, announce=False))
        try:
            await self._dispatcher.dispatch(task)
        finally:
            await caching

    async def written(self, task: Task) -> None:
        """A transition already in the database (a claim's UPDATE, or one a
        redelivery found stored after its worker died before the cache
        write): cache and announce it. Both are version-guarded, so a stale
        one is harmless."""
        await self._cache.remember(task)

    async def republish(self, task: Task) -> bool:
        """Publish a PENDING task's wake-up again (its message was never
        confirmed, or is long overdue); ``False`` if the broker refused."""
        return await self._dispatcher.dispatch(task)

    async def catch_up(self) -> None:
        """Write what is buffered: broker confirmations, and cache writes missed
        while the cache was down."""
        await self._dispatcher.flush()
        await self._cache.replay()
