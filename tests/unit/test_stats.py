"""The dashboard's snapshot (StatsService) and the workers' reports (WorkerPresence)."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from taskcore import TaskStatus, Worker
from taskcore.adapters.memory import MemoryQueue, MemoryQueueDepths, MemoryWorkers
from taskcore.adapters.memory.percentiles import percentile_cont
from taskcore.dashboard.stats import StatsService
from taskcore.errors import QueueUnavailable, RepositoryUnavailable
from taskcore.model.stats import MinuteStats, minute_of
from taskcore.model.task import NewTask
from taskcore.model.workers import WorkerReport
from taskcore.ports import QueueDepths
from taskcore.work.presence import WorkerPresence, worker_id
from tests.core import Core, LoopClock, build_core

from .conftest import ManualClock
from .test_http import eventually

NOW = datetime(2026, 1, 1, 12, 30, 40, tzinfo=UTC)


def test_percentile_cont_interpolates_like_postgresql() -> None:
    assert percentile_cont([], 0.5) is None
    assert percentile_cont([7.0], 0.95) == 7.0
    assert percentile_cont([4.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile_cont([1.0, 2.0, 4.0], 0.95) == pytest.approx(3.8)
    assert percentile_cont([1.0, 2.0], 0.5) == 1.5
    assert percentile_cont([float(n) for n in range(1, 101)], 0.95) == pytest.approx(95.05)


def test_minute_of_is_the_utc_minute() -> None:
    kolkata = datetime(2026, 1, 1, 18, 0, 59, 999, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert minute_of(kolkata) == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)


class SlowQueue:
    """Depths that take a while, fail, or count how often they were asked."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.asked = 0

    async def depth(self, queue: str = "default") -> int:
        self.asked += 1
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise QueueUnavailable("broker down")
        return 3

    async def dead_letter_depth(self, queue: str = "default") -> int:
        return 1


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def finish(
    core: Core,
    clock: ManualClock,
    *,
    owner: str | None,
    fail: bool = False,
    run_s: float = 1,
) -> None:
    """A task that waited 0.5 s for a worker and ran ``run_s``."""
    task = await core.tasks.add(
        NewTask(type="echo", input=1, max_attempts=1, run_at=clock.now(), created_at=clock.now(), owner=owner)
    )
    claimed = await core.tasks.claim(task.id, clock.now() + timedelta(seconds=0.5), timedelta(seconds=30))
    assert claimed is not None
    at = clock.now() + timedelta(seconds=0.5 + run_s)
    assert await core.tasks.save(claimed.fail("boom", at, None) if fail else claimed.complete("ok", at))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def stats_over(core: Core, queue: QueueDepths | None = None, **options: Any) -> StatsService:
    return StatsService(
        dashboard=core.dashboard,
        tasks=core.tasks,
        roster=core.roster,
        clock=core.clock,
        queue=queue,
        **options,
    )


async def test_a_snapshot_of_every_task(core: Core, clock: ManualClock) -> None:
    clock.advance(-120)  # 12:28:40
    await finish(core, clock, owner="alice")
    clock.advance(120)
    await finish(core, clock, owner="bob", fail=True, run_s=3)
    await core.tasks.add(NewTask(type="echo", input=1, max_attempts=1, run_at=NOW, created_at=NOW))
    await core.roster.report_worker(
        WorkerReport(id="w1", started_at=NOW, seen_at=NOW, in_flight=1, processed=2)
    )
    stale = NOW - timedelta(seconds=31)
    await core.roster.report_worker(
        WorkerReport(id="w0", started_at=stale, seen_at=stale, in_flight=0, processed=0)
    )
    queue = MemoryQueue(clock)
    await queue.publish(b"1")
    stats = stats_over(core, MemoryQueueDepths(queue))

    snapshot = await stats.snapshot(owner=None)

    assert snapshot.at == NOW
    assert snapshot.counts == {
        TaskStatus.PENDING: 1,
        TaskStatus.PROCESSING: 0,
        TaskStatus.COMPLETED: 1,
        TaskStatus.FAILED: 1,
        TaskStatus.CANCELLED: 0,
    }
    # 15 minutes, the last one the current one, gaps filled with empty minutes
    minutes = snapshot.minutes
    assert len(minutes) == 15
    assert minutes[-1].minute == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    assert minutes[0].minute == datetime(2026, 1, 1, 12, 16, tzinfo=UTC)
    assert [m.minute for m in minutes] == sorted(m.minute for m in minutes)
    assert (minutes[-1].failed, minutes[-1].run_p50_s, minutes[-1].wait_p95_s) == (1, 3.0, 0.5)
    assert (minutes[-3].completed, minutes[-3].run_p95_s) == (1, 1.0)
    assert minutes[-2] == MinuteStats(minute=datetime(2026, 1, 1, 12, 29, tzinfo=UTC))
    assert [t.owner for t in snapshot.failures] == ["bob"]
    assert snapshot.queue is not None
    assert (snapshot.queue.ready, snapshot.queue.dead_letters) == (1, 0)
    assert [w.id for w in snapshot.workers or []] == ["w1"]
    assert snapshot.workers_seen_s == 30


async def test_an_owner_sees_only_its_tasks_and_no_system_numbers(core: Core, clock: ManualClock) -> None:
    await finish(core, clock, owner="alice")
    await finish(core, clock, owner="bob", fail=True)
    stats = stats_over(core, SlowQueue())

    snapshot = await stats.snapshot(owner="alice")

    assert snapshot.counts[TaskStatus.COMPLETED] == 1
    assert snapshot.counts[TaskStatus.FAILED] == 0
    assert sum(m.completed + m.failed for m in snapshot.minutes) == 1
    assert snapshot.failures == []
    assert snapshot.queue is None
    assert snapshot.workers is None


async def test_the_queue_is_read_at_most_every_two_seconds(core: Core) -> None:
    queue, ticks = SlowQueue(), Ticks()
    stats = stats_over(core, queue, monotonic=ticks)
    for _ in range(3):
        await stats.snapshot(owner=None)
    assert queue.asked == 1
    ticks.now = 2.5
    await stats.snapshot(owner=None)
    assert queue.asked == 2


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("queue", "answered_in"),
    [(SlowQueue(delay_s=5), 0.05), (SlowQueue(fail=True), 0.0)],
    ids=["slow", "down"],
)
async def test_a_broker_that_does_not_answer_leaves_the_depths_unknown(
    core: Core, queue: SlowQueue, answered_in: float
) -> None:
    stats = stats_over(core, queue, depth_timeout_s=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    snapshot = await asyncio.wait_for(stats.snapshot(owner=None), 1)
    assert loop.time() - started == pytest.approx(answered_in, abs=1e-3)  # given up on at the timeout
    assert snapshot.queue is not None
    assert (snapshot.queue.ready, snapshot.queue.dead_letters) == (None, None)


async def test_a_window_of_any_length(core: Core) -> None:
    stats = stats_over(core, window_minutes=1)
    assert [m.minute for m in (await stats.snapshot(owner=None)).minutes] == [minute_of(NOW)]
    with pytest.raises(ValueError, match="window_minutes"):
        stats_over(core, window_minutes=0)


# -- workers reporting --------------------------------------------------------


async def test_a_report_keeps_the_start_and_moves_the_last_seen(core: Core, clock: ManualClock) -> None:
    presence = WorkerPresence(roster=core.roster, clock=clock, worker="host-1")
    await presence.report(in_flight=2, processed=0)
    clock.advance(5)
    await presence.report(in_flight=0, processed=4)
    assert core.db.workers == {
        "host-1": WorkerReport(
            id="host-1", started_at=NOW, seen_at=NOW + timedelta(seconds=5), in_flight=0, processed=4
        )
    }


def test_a_worker_is_named_by_host_and_pid() -> None:
    assert worker_id() == f"{socket.gethostname()}-{os.getpid()}"


class CountingWorkers(MemoryWorkers):
    """The roster, counting the reports it is given."""

    def __init__(self, core: Core) -> None:
        super().__init__(core.db)
        self.reports = 0

    async def report_worker(self, report: WorkerReport) -> None:
        self.reports += 1
        await super().report_worker(report)


@pytest.mark.looptime
async def test_a_running_worker_reports_itself_until_it_stops() -> None:
    core = build_core(clock=LoopClock())  # report times are the loop's (fake) time
    roster = CountingWorkers(core)
    presence = WorkerPresence(roster=roster, clock=core.clock, worker="w", interval_s=0.01)
    worker = Worker(processor=core.processor, queue=core.queue, concurrency=2, presence=presence)
    running = asyncio.create_task(worker.run())
    await eventually(lambda: "w" in core.db.workers)
    task = await core.service.submit("reverse", "abc")
    await eventually(lambda: core.db.workers["w"].processed == 1)
    assert core.db.tasks[task.id].status is TaskStatus.COMPLETED
    reported = roster.reports
    await eventually(lambda: roster.reports >= reported + 2)  # reporting on, every 0.01 s
    worker.stop()
    await asyncio.wait_for(running, 5)
    last, reported = core.db.workers["w"], roster.reports
    await asyncio.sleep(0.05)  # five intervals
    assert roster.reports == reported  # no report once stopped
    assert core.db.workers["w"] == last
    assert last.in_flight == 0
    await core.aclose()


class FlakyReports(MemoryWorkers):
    """Reports fail: first like a database that is down, then like a bug."""

    def __init__(self, core: Core) -> None:
        super().__init__(core.db)
        self.failures: list[BaseException] = [RepositoryUnavailable("down"), RuntimeError("a bug")]

    async def report_worker(self, report: WorkerReport) -> None:
        if self.failures:
            raise self.failures.pop(0)
        await super().report_worker(report)


@pytest.mark.looptime
async def test_reports_that_fail_neither_stop_the_reports_nor_the_worker(clock: ManualClock) -> None:
    core = build_core(clock=clock)
    roster = FlakyReports(core)
    presence = WorkerPresence(roster=roster, clock=clock, worker="w", interval_s=0.01)
    worker = Worker(processor=core.processor, queue=core.queue, concurrency=1, presence=presence)
    running = asyncio.create_task(worker.run())
    await eventually(lambda: "w" in core.db.workers)
    assert roster.failures == []
    task = await core.service.submit("reverse", "abc")  # and the worker still works
    await eventually(lambda: core.db.tasks[task.id].status is TaskStatus.COMPLETED)
    worker.stop()
    await asyncio.wait_for(running, 5)
    await core.aclose()
