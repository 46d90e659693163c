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
import logging
from collections import deque
from datetime import datetime

from taskcore.errors import ServiceUnavailable
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.model.workflows import settle
from taskcore.ports import ConcurrencySlots, Dependencies, TransitionStore
from taskcore.transitions.dispatch import Dispatcher
from taskcore.transitions.status_cache import StatusCache

log = logging.getLogger("taskcore.transitions")


class Transitions:
    def __init__(
        self,
        *,
        store: TransitionStore,
        cache: StatusCache,
        dispatcher: Dispatcher,
        slots: ConcurrencySlots | None = None,
        dependencies: Dependencies | None = None,
    ) -> None:
        """``slots`` wakes the task a concurrency limit parked when a running
        one of its key ends (without it, parked tasks wait for the sweeper's
        last-resort re-dispatch); ``dependencies`` settles the tasks that run
        after one that ended (without it, the sweeper does)."""
        self._store = store
        self._cache = cache
        self._dispatcher = dispatcher
        self._slots = slots
        self._dependencies = dependencies

    @property
    def cache(self) -> StatusCache:
        return self._cache

    async def record(self, task: Task, *, publish: bool = True) -> bool:
        """Persist ``task``'s transition; ``False`` (and nothing else happens)
        when the stored row moved on meanwhile. ``publish=False`` is for a
        caller that gives back the message it holds: that message is the
        task's wake-up already. A task that ends settles the blocked tasks
        that run after it (``settle``), and those theirs, in turn."""
        if not await self._write(task, publish=publish):
            return False
        if task.is_final:
            await self._settle_after(task)
        return True

    async def _write(self, task: Task, *, publish: bool = True) -> bool:
        if not await self._store.save(task):
            return False
        await self._cache.remember(task)
        if publish and task.status is TaskStatus.PENDING and not task.blocked:
            await self._dispatcher.dispatch(task)
        if task.concurrency_key is not None and task.status is not TaskStatus.PROCESSING:
            await self._wake_next(task)
        return True

    async def settle(self, task: Task, now: datetime) -> Task | None:
        """A blocked task whose parents may have ended: unblock it (its
        wake-up goes out), cancel it with the reason, or leave it waiting
        (``model/workflows.py``); the change recorded, or ``None``. A
        cancelled one's own dependents are settled in turn."""
        changed = await self._settle_one(task, now)
        if changed is not None and changed.is_final:
            await self._settle_after(changed)
        return changed

    async def _settle_one(self, task: Task, now: datetime) -> Task | None:
        if self._dependencies is None:
            return None
        changed = settle(task, await self._dependencies.parents(task), now)
        if changed is None or not await self._write(changed):
            return None  # still waiting, or it changed meanwhile (its own end settles the rest)
        return changed

    async def _settle_after(self, ended: Task) -> None:
        """The blocked tasks that run after ``ended``, settled as of its end; a
        cancelled one's dependents after it, and so on (a loop, not recursion:
        a chain may be a thousand steps long). A failure leaves the rest to the
        sweeper, which settles stalled tasks."""
        if self._dependencies is None:
            return
        ends = deque([ended])
        try:
            while ends:
                parent = ends.popleft()
                for task in await self._dependencies.blocked_after(parent.id):
                    changed = await self._settle_one(task, parent.updated_at)
                    if changed is not None and changed.is_final:
                        ends.append(changed)
        except ServiceUnavailable as exc:
            log.warning("the tasks after task %s were not settled (the sweeper will): %s", ended.id, exc)

    async def _wake_next(self, ended: Task) -> None:
        """A task of a concurrency-limited key is not running (any more): its
        slot may be free, so the next parked task of the key gets its wake-up.
        (Waking one too many is harmless: its claim parks it again.)"""
        if self._slots is None or ended.concurrency_key is None:
            return
        try:
            for task in await self._slots.wake(ended.type, ended.concurrency_key):
                await self._dispatcher.dispatch(task)
        except ServiceUnavailable as exc:
            log.warning(
                "a slot of %s freed, but no parked task was woken (the sweeper will): %s", ended.type, exc
            )

    async def created(self, task: Task) -> None:
        """A task was just stored as PENDING: its wake-up and its write-through
        go out together. Both only follow the commit and neither needs the
        other (a worker's newer state wins in the cache whichever lands
        first), so the caller waits for the slower round trip, not their sum.
        Nobody waits on a task whose id is not out yet: nothing to announce.
        A blocked task gets no wake-up until the tasks it runs after end."""
        caching = asyncio.ensure_future(self._cache.remember(task, announce=False))
        try:
            if not task.blocked:
                await self._dispatcher.dispatch(task)
        finally:
            await caching

    async def written(self, task: Task) -> None:
        """A transition already in the database (a claim's UPDATE, or one a
        redelivery found stored after its worker died before the cache
        write): cache and announce it. Both are version-guarded, so a stale
        one is harmless."""
        await self._cache.remember(task)

    async def deferred(self, task: Task) -> bool:
        """A claim deferred ``task`` (its rate limit): the change is stored;
        cache it and publish its wake-up for its new ``run_at``."""
        await self._cache.remember(task)
        return await self._dispatcher.dispatch(task)

    async def republish(self, task: Task) -> bool:
        """Publish a PENDING task's wake-up again (its message was never
        confirmed, or is long overdue); ``False`` if the broker refused."""
        return await self._dispatcher.dispatch(task)

    async def catch_up(self) -> None:
        """Write what is buffered: broker confirmations, and cache writes missed
        while the cache was down."""
        await self._dispatcher.flush()
        await self._cache.replay()
