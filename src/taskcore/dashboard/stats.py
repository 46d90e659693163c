"""The dashboard's numbers: one snapshot of what the system is doing.

``StatsService.snapshot`` assembles, for one caller, the task counts by
status, a per-minute series over the last ``window_minutes`` (tasks finished
COMPLETED or FAILED, and the p50/p95 of how long their last attempt waited for
a worker and ran), the most recent failures, and, for callers who see every
task, the queue depths and the workers seen recently. The repository does the
counting (``status_counts``, ``minute_stats``, ``workers_seen``); this module
fills the gaps, so the series always has one entry per minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from taskcore.errors import ServiceUnavailable
from taskcore.model.query import TaskQuery
from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.model.stats import MinuteStats, QueueReading, Stats, minute_of
from taskcore.model.status import TaskStatus
from taskcore.model.workers import WorkerReport
from taskcore.ports import Clock, DashboardReads, QueueDepths, TaskFinder, WorkerRoster

WINDOW_MINUTES = 15
WORKERS_SEEN_S = 30.0
FAILURES_SHOWN = 10


class StatsService:
    def __init__(
        self,
        *,
        dashboard: DashboardReads,
        tasks: TaskFinder,
        roster: WorkerRoster,
        clock: Clock,
        queue: QueueDepths | None = None,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        window_minutes: int = WINDOW_MINUTES,
        workers_seen_s: float = WORKERS_SEEN_S,
        failures_shown: int = FAILURES_SHOWN,
        depth_timeout_s: float = 1.0,
        depth_max_age_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_minutes < 1:
            raise ValueError("window_minutes must be at least 1")
        self._dashboard = dashboard
        self._tasks = tasks
        self._roster = roster
        self._clock = clock
        self._queue = queue
        self._queues = list(queues)
        self._window_minutes = window_minutes
        self._workers_seen = timedelta(seconds=workers_seen_s)
        self._failures_shown = failures_shown
        self._depth_timeout_s = depth_timeout_s
        self._depth_max_age_s = depth_max_age_s
        self._monotonic = monotonic
        self._last_reading: tuple[float, QueueReading] | None = None

    async def snapshot(self, *, owner: str | None) -> Stats:
        """What ``owner`` may see (``None``: every task, and the system-wide
        numbers too). ``RepositoryUnavailable`` if the database is down; a
        broker that does not answer only leaves the queue depths unknown."""
        now = self._clock.now()
        first = minute_of(now) - timedelta(minutes=self._window_minutes - 1)
        counts = await self._dashboard.status_counts(owner)
        rows = await self._dashboard.minute_stats(first, owner)
        failures = await self._tasks.find(
            TaskQuery(owner=owner, status=TaskStatus.FAILED, limit=self._failures_shown)
        )
        queue: QueueReading | None = None
        workers: list[WorkerReport] | None = None
        if owner is None:
            workers = await self._roster.workers_seen(now - self._workers_seen)
            queue = await self._queue_reading()
        return Stats(
            at=now,
            counts={status: counts.get(status, 0) for status in TaskStatus},
            minutes=self._series(first, rows),
            failures=failures,
            queue=queue,
            workers=workers,
            workers_seen_s=self._workers_seen.total_seconds(),
        )

    def _series(self, first: datetime, rows: Sequence[MinuteStats]) -> list[MinuteStats]:
        """One entry per minute of the window: the repository's, or an empty one."""
        found = {minute_of(row.minute): row for row in rows}
        minutes = (first + timedelta(minutes=n) for n in range(self._window_minutes))
        return [found.get(minute) or MinuteStats(minute=minute) for minute in minutes]

    async def _queue_reading(self) -> QueueReading | None:
        """The depths, read at most every ``depth_max_age_s`` however many
        dashboards poll, and given up on after ``depth_timeout_s``."""
        if self._queue is None:
            return None
        now = self._monotonic()
        if self._last_reading is not None and now - self._last_reading[0] < self._depth_max_age_s:
            return self._last_reading[1]
        try:
            async with asyncio.timeout(self._depth_timeout_s):
                ready = dead_letters = 0
                for queue in self._queues:  # every named queue, summed
                    ready += await self._queue.depth(queue)
                    dead_letters += await self._queue.dead_letter_depth(queue)
                reading = QueueReading(ready=ready, dead_letters=dead_letters)
        except (ServiceUnavailable, TimeoutError):
            reading = QueueReading(ready=None, dead_letters=None)
        self._last_reading = (now, reading)
        return reading
