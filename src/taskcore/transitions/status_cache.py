"""Fault-tolerant use of the cache port, and the announcement of changes.

A transition is published to readers in two ways: the cache, for fast reads,
and (when an announcer is given) the change feed, for readers waiting on it.

The cache only makes reads fast: when it fails, the task database answers and
the caller never sees an error. TTLs depend on the task's state, so finished
tasks leave the cache on their own.

A write that fails while the cache is unreachable is not forgotten: the
newest missed state of each task is kept (bounded) and written again once the
cache answers, on the next successful write or by the sweeper. Otherwise the
entry cached at the claim (PROCESSING) would outlive the lost COMPLETED write
and a task would read as going backwards once the cache is back. Replaying is
safe because the cache keeps an entry only if its version is newer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from datetime import timedelta

from taskcore.config import CoreConfig
from taskcore.errors import CacheUnavailable
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.ports.cache import TaskCache
from taskcore.transitions.announcer import ChangeAnnouncer

log = logging.getLogger("taskcore.cache")

MAX_UNWRITTEN = 100_000
COMPLETED_MEMO = 1024


class StatusCache:
    """One per process, shared by everyone who writes or reads the cache, so a
    write missed by a worker is replayed by the sweeper."""

    def __init__(
        self,
        cache: TaskCache,
        config: CoreConfig,
        announcer: ChangeAnnouncer | None = None,
        *,
        completed_memo: int = COMPLETED_MEMO,
    ) -> None:
        self._cache = cache
        self._announcer = announcer
        # COMPLETED is the one state nothing leaves (retry takes FAILED or
        # CANCELLED tasks only), so the latest completed tasks are kept in the
        # process too: a client polling its finished task costs no round trip.
        self._completed: OrderedDict[int, Task] = OrderedDict()
        self._completed_memo = completed_memo
        self._final_ttl = timedelta(seconds=config.finished_ttl_s)
        self._active_ttl = timedelta(seconds=config.active_ttl_s)
        self._unwritten: dict[int, Task] = {}
        self._replay_lock = asyncio.Lock()
        self._replaying: asyncio.Task[int] | None = None

    @property
    def unwritten(self) -> int:
        return len(self._unwritten)

    def _ttl(self, task: Task) -> timedelta:
        return self._final_ttl if task.is_final else self._active_ttl

    async def remember(self, task: Task, *, announce: bool = True) -> None:
        """``task`` just changed: cache it, then tell whoever waits on it.
        A task just created has nobody waiting on it yet (its id was not
        known), so its creation need not be announced."""
        await self.refill(task)
        if announce and self._announcer is not None:
            self._announcer.announce(task)

    async def refill(self, task: Task) -> None:
        """Cache ``task`` as read from the database (no change to announce)."""
        self._memorise(task)
        try:
            await self._cache.put(task, self._ttl(task))
        except CacheUnavailable as exc:
            log.debug("cache write of task %s missed: %s", task.id, exc)
            self._keep(task)
            return
        self._unwritten.pop(task.id, None)
        if self._unwritten and (self._replaying is None or self._replaying.done()):
            # In the background and once at a time: when the cache comes back
            # every request in flight would otherwise replay the whole backlog.
            self._replaying = asyncio.create_task(self.replay(), name="taskcore-cache-replay")

    def _keep(self, task: Task) -> None:
        known = self._unwritten.get(task.id)
        if known is not None and known.version >= task.version:
            return
        if known is None and len(self._unwritten) >= MAX_UNWRITTEN:
            self._unwritten.pop(next(iter(self._unwritten)))  # the oldest miss goes first
        self._unwritten[task.id] = task

    async def replay(self) -> int:
        """Write the missed states again; stop at the first failure. Returns how
        many landed (0 when a replay is already under way)."""
        if self._replay_lock.locked():
            return 0
        async with self._replay_lock:
            return await self._replay()

    async def _replay(self) -> int:
        written = 0
        for task_id, task in list(self._unwritten.items()):
            try:
                await self._cache.put(task, self._ttl(task))
            except CacheUnavailable:
                break
            if self._unwritten.get(task_id) is task:
                del self._unwritten[task_id]
            written += 1
        if written:
            log.info("cache back: %d missed writes replayed", written)
        return written

    async def lookup(self, task_id: int) -> Task | None:
        completed = self._completed.get(task_id)
        if completed is not None:
            return completed
        try:
            task = await self._cache.get(task_id)
        except CacheUnavailable as exc:
            log.debug("cache read skipped for task %s: %s", task_id, exc)
            return None
        if task is not None:
            self._memorise(task)
        return task

    def _memorise(self, task: Task) -> None:
        if task.status is not TaskStatus.COMPLETED or not self._completed_memo:
            return
        self._completed[task.id] = task
        self._completed.move_to_end(task.id)
        if len(self._completed) > self._completed_memo:
            self._completed.popitem(last=False)
