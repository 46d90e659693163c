"""The behaviour every ``DashboardReads`` and ``WorkerRoster`` must have.

Subclass ``DashboardReadsContract`` next to two fixtures over one opened,
empty database: ``dashboard`` (the adapter under test: ``MemoryDashboard``,
``PostgresDashboard``) and ``tasks`` (the task table's adapter, see
``tests/contracts/tasks.py``), through which the tests set up the tasks the
dashboard counts. Subclass ``WorkerRosterContract`` next to a ``roster``
fixture (``MemoryWorkers``, ``PostgresWorkers``).
"""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.model.workers import WorkerReport
from taskcore.ports import DashboardReads, WorkerRoster
from tests.contracts.tasks import LEASE, T0, Tasks, claimed_task, later, new_task


async def finished_task(
    tasks: Tasks,
    *,
    owner: str | None,
    claimed_at: float,
    finished_at: float,
    failed: bool = False,
    run_at: float = 0,
) -> Task:
    """A task due at ``later(run_at)``, claimed and finished at the given offsets."""
    new = new_task(run_at=later(run_at), created_at=later(run_at))
    task = await tasks.add(msgspec.structs.replace(new, owner=owner))
    claimed = await tasks.claim(task.id, later(claimed_at), LEASE)
    assert claimed is not None
    done = (
        claimed.fail("boom", later(finished_at), None)
        if failed
        else claimed.complete("ok", later(finished_at))
    )
    assert await tasks.save(done)
    return done


class DashboardReadsContract:
    """Counts by status and per-minute stats, for everyone or one owner."""

    async def test_status_counts_by_owner(self, dashboard: DashboardReads, tasks: Tasks) -> None:
        await finished_task(tasks, owner="alice", claimed_at=1, finished_at=2)
        await tasks.add(msgspec.structs.replace(new_task(), owner="alice"))
        await finished_task(tasks, owner="bob", claimed_at=1, finished_at=2, failed=True)
        await claimed_task(tasks)  # no owner: auth was off

        def nonzero(counts: dict[TaskStatus, int]) -> dict[TaskStatus, int]:
            return {status: n for status, n in counts.items() if n}

        assert nonzero(await dashboard.status_counts(None)) == {
            TaskStatus.COMPLETED: 1,
            TaskStatus.PENDING: 1,
            TaskStatus.FAILED: 1,
            TaskStatus.PROCESSING: 1,
        }
        assert nonzero(await dashboard.status_counts("alice")) == {
            TaskStatus.COMPLETED: 1,
            TaskStatus.PENDING: 1,
        }
        assert nonzero(await dashboard.status_counts("carol")) == {}

    async def test_minute_stats_count_finishes_and_their_percentiles(
        self, dashboard: DashboardReads, tasks: Tasks
    ) -> None:
        # T0 is 05:06:07.123456: these finish in the minutes 05:06 and 05:07
        await finished_task(tasks, owner="alice", claimed_at=1, finished_at=3)  # wait 1, run 2
        await finished_task(tasks, owner="alice", claimed_at=2, finished_at=7)  # wait 2, run 5
        await finished_task(tasks, owner="bob", claimed_at=4, finished_at=5, failed=True)  # 4, 1
        await finished_task(tasks, owner="bob", claimed_at=1, finished_at=70)  # 05:07: wait 1, run 69
        # not counted: before the window, cancelled, retrying, running
        await finished_task(tasks, owner="alice", run_at=-300, claimed_at=-299, finished_at=-200)
        cancelled = await tasks.add(new_task())
        assert await tasks.save(cancelled.cancel(later(3)))
        retrying = await claimed_task(tasks)
        assert await tasks.save(retrying.fail("boom", later(4), timedelta(seconds=5)))
        await claimed_task(tasks)

        minute = T0.replace(second=0, microsecond=0)
        everyone = await dashboard.minute_stats(later(-60), None)
        assert [m.minute for m in everyone] == [minute, minute + timedelta(minutes=1)]
        assert all(m.minute.utcoffset() == timedelta(0) for m in everyone)
        first, second = everyone
        assert (first.completed, first.failed, second.completed, second.failed) == (2, 1, 1, 0)
        # percentile_cont: waits [1, 2, 4], runs [1, 2, 5]
        assert first.wait_p50_s == pytest.approx(2)
        assert first.wait_p95_s == pytest.approx(3.8)
        assert first.run_p50_s == pytest.approx(2)
        assert first.run_p95_s == pytest.approx(4.7)
        assert second.wait_p50_s == pytest.approx(1)
        assert second.run_p95_s == pytest.approx(69)

        (mine,) = await dashboard.minute_stats(later(-60), "alice")
        assert (mine.minute, mine.completed, mine.failed) == (minute, 2, 0)
        assert mine.wait_p50_s == pytest.approx(1.5)
        assert mine.wait_p95_s == pytest.approx(1.95)
        assert mine.run_p50_s == pytest.approx(3.5)
        assert mine.run_p95_s == pytest.approx(4.85)
        # the window starts at the minute of ``since``
        assert [m.minute for m in await dashboard.minute_stats(later(60), None)] == [second.minute]
        assert await dashboard.minute_stats(later(-60), "carol") == []


class WorkerRosterContract:
    """Workers' reports: replaced per worker, listed while seen, forgotten after a day."""

    async def test_workers_report_and_are_listed_while_seen(self, roster: WorkerRoster) -> None:
        def report(worker: str, seen_s: float, in_flight: int = 0, processed: int = 0) -> WorkerReport:
            return WorkerReport(
                id=worker, started_at=T0, seen_at=later(seen_s), in_flight=in_flight, processed=processed
            )

        await roster.report_worker(report("w1", 0))
        await roster.report_worker(report("w2", 10, in_flight=2, processed=5))
        assert await roster.workers_seen(later(5)) == [report("w2", 10, 2, 5)]
        assert [w.id for w in await roster.workers_seen(T0)] == ["w2", "w1"]

        await roster.report_worker(report("w1", 20, in_flight=3, processed=7))  # replaces its row
        seen = await roster.workers_seen(T0)
        assert seen == [report("w1", 20, 3, 7), report("w2", 10, 2, 5)]
        assert all(w.seen_at.utcoffset() == timedelta(0) for w in seen)

        # a report forgets the workers gone for a day, but never its own row
        await roster.report_worker(report("w2", 86_400 + 25))
        assert [w.id for w in await roster.workers_seen(later(-1000))] == ["w2"]
