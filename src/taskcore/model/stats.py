"""The dashboard's numbers as records: per-minute series, queue depths, one snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.model.workers import WorkerReport


class MinuteStats(msgspec.Struct, frozen=True, kw_only=True):
    """Tasks that reached COMPLETED or FAILED during one minute (UTC), and the
    p50/p95 of their last attempt's queue wait (``started_at - run_at``: from
    due to claimed) and run time (``finished_at - started_at``), in seconds."""

    minute: datetime
    completed: int = 0
    failed: int = 0
    wait_p50_s: float | None = None
    wait_p95_s: float | None = None
    run_p50_s: float | None = None
    run_p95_s: float | None = None


class QueueReading(msgspec.Struct, frozen=True, kw_only=True):
    """Messages waiting; ``None`` where the broker could not be asked."""

    ready: int | None
    dead_letters: int | None


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    counts: dict[TaskStatus, int]  # every status, zeros included
    minutes: list[MinuteStats]  # one per minute, oldest first; the last is the current minute
    failures: list[Task]  # FAILED tasks, newest first
    # System-wide, so only for callers who see every task (None otherwise):
    queue: QueueReading | None
    workers: list[WorkerReport] | None  # seen in the last ``workers_seen_s``, most recent first
    workers_seen_s: float


def minute_of(at: datetime) -> datetime:
    """The start of ``at``'s minute, in UTC."""
    return at.astimezone(UTC).replace(second=0, microsecond=0)
