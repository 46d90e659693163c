"""A dict of tasks with the repository's guarded writes."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from taskcore.errors import RepositoryUnavailable, UnstorableValue
from taskcore.idempotency import AddedOnce, IdempotencyKey
from taskcore.presence import WorkerReport
from taskcore.query import TaskQuery
from taskcore.stats import MinuteStats, minute_of, percentile_cont
from taskcore.status import TaskStatus
from taskcore.task import NewTask, Task


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class MemoryRepository:
    def __init__(self) -> None:
        self.tasks: dict[int, Task] = {}
        self.dispatched_at: dict[int, datetime] = {}
        self.idempotency_keys: dict[tuple[str, str], tuple[str, int, datetime]] = {}
        self.workers: dict[str, WorkerReport] = {}
        self.available = True
        self._next_id = 1

    async def open(self) -> None:
        """Nothing to connect; present so every adapter has the same lifecycle."""

    async def close(self) -> None:
        """Nothing to release."""

    async def ping(self) -> None:
        self._check()

    def _check(self) -> None:
        if not self.available:
            raise RepositoryUnavailable("memory repository switched off")

    @staticmethod
    def _storable(*values: Any) -> None:
        """Refuse what PostgreSQL would refuse, so dev mode and tests fail alike."""
        if any(_has_nul(value) for value in values):
            raise UnstorableValue("a NUL character cannot be stored")

    async def add(self, new: NewTask) -> Task:
        self._check()
        self._storable(new.input)
        task = Task.created(self._next_id, new)
        self._next_id += 1
        self.tasks[task.id] = task
        return task

    async def add_once(self, new: NewTask, key: IdempotencyKey) -> AddedOnce:
        self._check()
        slot = (new.owner or "", key.key)
        used = self.idempotency_keys.get(slot)
        if used is not None and used[2] >= key.expired_before:
            request_hash, task_id, _ = used
            return AddedOnce(self.tasks[task_id], created=False, request_hash=request_hash)
        task = await self.add(new)
        self.idempotency_keys[slot] = (key.request_hash, task.id, new.created_at)
        return AddedOnce(task, created=True, request_hash=key.request_hash)

    async def get(self, task_id: int, *, fresh: bool = False) -> Task | None:
        self._check()
        return self.tasks.get(task_id)

    async def claim(self, task_id: int, now: datetime, lease: timedelta) -> Task | None:
        self._check()
        task = self.tasks.get(task_id)
        if task is None or not task.is_due(now):
            return None
        claimed = task.claim(now, lease)
        self.tasks[task_id] = claimed
        return claimed

    async def save(self, task: Task) -> bool:
        self._check()
        self._storable(task.result, task.error)
        stored = self.tasks.get(task.id)
        if stored is None or stored.version != task.version - 1:
            return False
        self.tasks[task.id] = task
        if task.status is TaskStatus.PENDING:
            self.dispatched_at.pop(task.id, None)
        return True

    async def renew_lease(self, task_id: int, version: int, lease_until: datetime) -> bool:
        self._check()
        task = self.tasks.get(task_id)
        if task is None or task.version != version or task.status is not TaskStatus.PROCESSING:
            return False
        self.tasks[task_id] = msgspec.structs.replace(task, lease_until=lease_until)
        return True

    async def mark_dispatched(self, task_ids: Sequence[int], at: datetime) -> None:
        self._check()
        for task_id in task_ids:
            task = self.tasks.get(task_id)
            if task is not None and task.status is TaskStatus.PENDING:
                self.dispatched_at[task_id] = at

    async def lapsed(self, now: datetime, limit: int) -> list[Task]:
        self._check()
        found = [
            t
            for t in self.tasks.values()
            if t.status is TaskStatus.PROCESSING and t.lease_until is not None and t.lease_until < now
        ]
        found.sort(key=lambda t: t.lease_until or now)
        return found[:limit]

    async def forget_idempotency_keys(self, used_before: datetime, limit: int) -> int:
        self._check()
        expired = sorted(
            (slot for slot, (_, _, used_at) in self.idempotency_keys.items() if used_at < used_before),
            key=lambda slot: self.idempotency_keys[slot][2],
        )
        for slot in expired[:limit]:
            del self.idempotency_keys[slot]
        return min(len(expired), limit)

    async def undispatched(
        self, *, unconfirmed_before: datetime, overdue_before: datetime, limit: int
    ) -> list[Task]:
        self._check()
        found = []
        for task in self.tasks.values():
            if task.status is not TaskStatus.PENDING:
                continue
            at = self.dispatched_at.get(task.id)
            if (at is None and task.updated_at < unconfirmed_before) or (
                at is not None and at < overdue_before and task.run_at < overdue_before
            ):
                found.append(task)
        found.sort(key=lambda t: t.updated_at)
        return found[:limit]

    async def find(self, query: TaskQuery) -> list[Task]:
        self._check()
        found = [t for t in self.tasks.values() if query.matches(t)]
        found.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        return found[: query.limit]

    # The dashboard's reads and the workers' reports (taskcore.stats, taskcore.presence).

    async def status_counts(self, owner: str | None) -> dict[TaskStatus, int]:
        self._check()
        return dict(Counter(t.status for t in self.tasks.values() if t.visible_to(owner)))

    async def minute_stats(self, since: datetime, owner: str | None) -> list[MinuteStats]:
        self._check()
        start = minute_of(since)
        finished: dict[datetime, list[Task]] = defaultdict(list)
        for task in self.tasks.values():
            if (
                task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED)
                and task.finished_at is not None
                and task.finished_at >= start
                and task.visible_to(owner)
            ):
                finished[minute_of(task.finished_at)].append(task)
        return [_minute(minute, finished[minute]) for minute in sorted(finished)]

    async def report_worker(self, report: WorkerReport) -> None:
        self._check()
        forget_before = report.seen_at - timedelta(days=1)
        self.workers = {k: w for k, w in self.workers.items() if w.seen_at >= forget_before}
        self.workers[report.id] = report

    async def workers_seen(self, since: datetime) -> list[WorkerReport]:
        self._check()
        seen = sorted((w for w in self.workers.values() if w.seen_at >= since), key=lambda w: w.id)
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
