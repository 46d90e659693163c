"""The dashboard's reads and the workers' reports in memory."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.adapters.memory.percentiles import percentile_cont
from taskcore.model.stats import MinuteStats, minute_of
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.model.workers import WorkerReport


class MemoryDashboard:
    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    async def status_counts(self, owner: str | None) -> dict[TaskStatus, int]:
        self.db.check()
        return dict(Counter(t.status for t in self.db.tasks.values() if t.visible_to(owner)))

    async def minute_stats(self, since: datetime, owner: str | None) -> list[MinuteStats]:
        self.db.check()
        start = minute_of(since)
        finished: dict[datetime, list[Task]] = defaultdict(list)
        for task in self.db.tasks.values():
            if (
                task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED)
                and task.finished_at is not None
                and task.finished_at >= start
                and task.visible_to(owner)
            ):
                finished[minute_of(task.finished_at)].append(task)
        return [_minute(minute, finished[minute]) for minute in sorted(finished)]


class MemoryWorkers:
    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    async def report_worker(self, report: WorkerReport) -> None:
        self.db.check()
        forget_before = report.seen_at - timedelta(days=1)
        self.db.workers = {k: w for k, w in self.db.workers.items() if w.seen_at >= forget_before}
        self.db.workers[report.id] = report

    async def workers_seen(self, since: datetime) -> list[WorkerReport]:
        self.db.check()
        seen = sorted((w for w in self.db.workers.values() if w.seen_at >= since), key=lambda w: w.id)
        return sorted(seen, key=lambda w: w.seen_at, reverse=True)


def _minute(minute: datetime, tasks: list[Task]) -> MinuteStats:
    waits = [(t.started_at - t.run_at).total_seconds() for t in tasks if t.started_at is not None]
    runs = [
        (t.finished_at - t.started_at).total_seconds()
        for t in tasks
        if t.started_at is not None and t.finished_at is not None
    ]
    return MinuteStats(
        minute=minute,
        completed=sum(t.status is TaskStatus.COMPLETED for t in tasks),
        failed=sum(t.status is TaskStatus.FAILED for t in tasks),
        wait_p50_s=percentile_cont(waits, 0.5),
        wait_p95_s=percentile_cont(waits, 0.95),
        run_p50_s=percentile_cont(runs, 0.5),
        run_p95_s=percentile_cont(runs, 0.95),
    )
