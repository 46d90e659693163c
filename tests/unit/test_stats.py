"""The dashboard's snapshot (StatsService) and the workers' reports (WorkerPresence)."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from taskcore import CoreConfig, Dispatcher, HandlerRegistry, TaskProcessor, TaskService, TaskStatus, Worker
from taskcore.adapters.memory import MemoryCache, MemoryQueue, MemoryQueueDepths, MemoryRepository
from taskcore.errors import QueueUnavailable, RepositoryUnavailable
from taskcore.presence import WorkerPresence, WorkerReport, worker_id
from taskcore.stats import MinuteStats, StatsService, minute_of, percentile_cont
from taskcore.task import NewTask

from .conftest import ManualClock
from .test_worker import eventually

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

    async def depth(self) -> int:
        self.asked += 1
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise QueueUnavailable("broker down")
        return 3

    async def dead_letter_depth(self) -> int:
        return 1


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def finish(
    repository: MemoryRepository,
    clock: ManualClock,
    *,
    owner: str | None,
    fail: bool = False,
    run_s: float = 1,
) -> None:
    task = await repository.add(
        NewTask(type="echo", input=1, max_attempts=1, run_at=clock.now(), created_at=clock.now(), owner=owner)
    )
    claimed = await repository.claim(task.id, clock.now() + timedelta(seconds=0.5), timedelta(seconds=30))
    assert claimed is not None
    at = clock.now() + timedelta(seconds=0.5 + run_s)
    assert await repository.save(claimed.fail("boom", at, None) if fail else claimed.complete("ok", at))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def _processor(repository: MemoryRepository, queue: MemoryQueue, clock: ManualClock) -> TaskProcessor:
    return TaskProcessor(
        repository=repository,
        dispatcher=Dispatcher(repository=repository, queue=queue, clock=clock, flush_delay_s=0),
        cache=MemoryCache(),
        clock=clock,
        registry=HandlerRegistry(),
        config=CoreConfig(),
    )


async def test_a_snapshot_of_every_task(repository: MemoryRepository, clock: ManualClock) -> None:
    clock.advance(-120)  # 12:28:40
    await finish(repository, clock, owner="alice")
    clock.advance(120)
    await finish(repository, clock, owner="bob", fail=True, run_s=3)
    await repository.add(NewTask(type="echo", input=1, max_attempts=1, run_at=NOW, created_at=NOW))
    await repository.report_worker(
        WorkerReport(id="w1", started_at=NOW, seen_at=NOW, in_flight=1, processed=2)
    )
    stale = NOW - timedelta(seconds=31)
    await repository.report_worker(
        WorkerReport(id="w0", started_at=stale, seen_at=stale, in_flight=0, processed=0)
    )
    queue = MemoryQueue()
    await queue.publish(b"1")
    stats = StatsService(repository=repository, clock=clock, queue=MemoryQueueDepths(queue))

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


async def test_an_owner_sees_only_its_tasks_and_no_system_numbers(
    repository: MemoryRepository, clock: ManualClock
) -> None:
    await finish(repository, clock, owner="alice")
    await finish(repository, clock, owner="bob", fail=True)
    stats = StatsService(repository=repository, clock=clock, queue=SlowQueue())

    snapshot = await stats.snapshot(owner="alice")

    assert snapshot.counts[TaskStatus.COMPLETED] == 1
    assert snapshot.counts[TaskStatus.FAILED] == 0
    assert sum(m.completed + m.failed for m in snapshot.minutes) == 1
    assert snapshot.failures == []
    assert snapshot.queue is None
    assert snapshot.workers is None


async def test_the_queue_is_read_at_most_every_two_seconds(
    repository: MemoryRepository, clock: ManualClock
) -> None:
    queue, ticks = SlowQueue(), Ticks()
    stats = StatsService(repository=repository, clock=clock, queue=queue, monotonic=ticks)
    for _ in range(3):
        await stats.snapshot(owner=None)
    assert queue.asked == 1
    ticks.now = 2.5
    await stats.snapshot(owner=None)
    assert queue.asked == 2


@pytest.mark.parametrize("queue", [SlowQueue(delay_s=5), SlowQueue(fail=True)], ids=["slow", "down"])
async def test_a_broker_that_does_not_answer_leaves_the_depths_unknown(
    repository: MemoryRepository, clock: ManualClock, queue: SlowQueue
) -> None:
    stats = StatsService(repository=repository, clock=clock, queue=queue, depth_timeout_s=0.05)
    snapshot = await asyncio.wait_for(stats.snapshot(owner=None), 1)
    assert snapshot.queue is not None
    assert (snapshot.queue.ready, snapshot.queue.dead_letters) == (None, None)


async def test_a_window_of_any_length(repository: MemoryRepository, clock: ManualClock) -> None:
    stats = StatsService(repository=repository, clock=clock, window_minutes=1)
    assert [m.minute for m in (await stats.snapshot(owner=None)).minutes] == [minute_of(NOW)]
    with pytest.raises(ValueError, match="window_minutes"):
        StatsService(repository=repository, clock=clock, window_minutes=0)


# -- workers reporting --------------------------------------------------------


async def test_a_report_keeps_the_start_and_moves_the_last_seen(
    repository: MemoryRepository, clock: ManualClock
) -> None:
    presence = WorkerPresence(repository=repository, clock=clock, worker="host-1")
    await presence.report(in_flight=2, processed=0)
    clock.advance(5)
    await presence.report(in_flight=0, processed=4)
    assert repository.workers == {
        "host-1": WorkerReport(
            id="host-1", started_at=NOW, seen_at=NOW + timedelta(seconds=5), in_flight=0, processed=4
        )
    }


def test_a_worker_is_named_by_host_and_pid() -> None:
    assert worker_id() == f"{socket.gethostname()}-{os.getpid()}"


async def test_a_running_worker_reports_itself_until_it_stops(
    repository: MemoryRepository,
    processor: TaskProcessor,
    service: TaskService,
    queue: MemoryQueue,
    clock: ManualClock,
) -> None:
    presence = WorkerPresence(repository=repository, clock=clock, worker="w", interval_s=0.01)
    worker = Worker(processor=processor, queue=queue, concurrency=2, presence=presence)
    running = asyncio.create_task(worker.run())
    await eventually(lambda: "w" in repository.workers)
    task = await service.submit("reverse", "abc")
    await eventually(lambda: repository.workers["w"].processed == 1)
    assert repository.tasks[task.id].status is TaskStatus.COMPLETED
    worker.stop()
    await asyncio.wait_for(running, 5)
    last = repository.workers["w"]
    await asyncio.sleep(0.05)
    assert repository.workers["w"] == last  # no report once stopped
    assert last.in_flight == 0


class FlakyReports(MemoryRepository):
    """Reports fail: first like a database that is down, then like a bug."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[BaseException] = [RepositoryUnavailable("down"), RuntimeError("a bug")]

    async def report_worker(self, report: WorkerReport) -> None:
        if self.failures:
            raise self.failures.pop(0)
        await super().report_worker(report)


async def test_reports_that_fail_neither_stop_the_reports_nor_the_worker(clock: ManualClock) -> None:
    repository = FlakyReports()
    presence = WorkerPresence(repository=repository, clock=clock, worker="w", interval_s=0.01)
    queue = MemoryQueue()
    worker = Worker(
        processor=_processor(repository, queue, clock), queue=queue, concurrency=1, presence=presence
    )
    running = asyncio.create_task(worker.run())
    await eventually(lambda: "w" in repository.workers)
    assert repository.failures == []
    worker.stop()
    await asyncio.wait_for(running, 5)
