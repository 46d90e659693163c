"""Ports for what people look at: counts, per-minute figures, workers, queue depths."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.model.stats import MinuteStats
from taskcore.model.status import TaskStatus
from taskcore.model.workers import WorkerReport


class DashboardReads(Protocol):
    async def status_counts(self, owner: str | None) -> dict[TaskStatus, int]:
        """How many of ``owner``'s tasks (``None``: everyone's) are in each
        status; a status with none may be left out."""
        ...

    async def minute_stats(self, since: datetime, owner: str | None) -> list[MinuteStats]:
        """Per minute (UTC), oldest first, from the minute of ``since``: the
        tasks of ``owner`` (``None``: everyone's) that reached COMPLETED or
        FAILED, with percentiles as PostgreSQL's ``percentile_cont`` computes
        them. Minutes with none are left out."""
        ...


class WorkerRoster(Protocol):
    """Workers saying they are alive, and who has been seen."""

    async def report_worker(self, report: WorkerReport) -> None:
        """Insert or replace the report of ``report.id``; forgets workers unseen
        for a day before ``report.seen_at``."""
        ...

    async def workers_seen(self, since: datetime) -> list[WorkerReport]:
        """Workers whose last report is from ``since`` or later, most recent first."""
        ...


class QueueDepths(Protocol):
    """How many messages wait in a named queue: ready for a consumer, and in
    its dead-letter queue. Failures raise ``QueueUnavailable``."""

    async def depth(self, queue: str = DEFAULT_QUEUE) -> int: ...

    async def dead_letter_depth(self, queue: str = DEFAULT_QUEUE) -> int: ...
