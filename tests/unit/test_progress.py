"""Progress reports from running handlers: coalesced, fenced by the attempt's version.

Every test runs on looptime's fake time with the core on the loop's clock, so
"a write at most every 0.5 s" is exact however busy the machine. A sync
handler's thread runs in real time; looptime then moves the fake time in step
with it, so those tests only count what cannot depend on speed.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

import pytest

from taskcore import HandlerRegistry, Outcome, TaskContext, TaskStatus
from taskcore.errors import RepositoryUnavailable
from taskcore.model.changes import TaskChange
from taskcore.model.progress import Progress
from taskcore.model.task import Task
from tests.contracts.tasks import new_task
from tests.core import Core, LoopClock, build_core, quick_config

from .test_http import eventually
from .test_processor import deliver

pytestmark = pytest.mark.looptime

INTERVAL_S = 0.5


def progress_core(registry: HandlerRegistry, **config: Any) -> Core:
    settings: dict[str, Any] = {"lease_s": 30, "task_timeout_s": 600, "progress_interval_s": INTERVAL_S}
    return build_core(clock=LoopClock(), registry=registry, config=quick_config(**{**settings, **config}))


def record_progress_writes(core: Core) -> list[tuple[float, Task]]:
    """Each stored progress report (a save that leaves the task PROCESSING), with the loop's time."""
    writes: list[tuple[float, Task]] = []
    save = core.tasks.save

    async def recording(task: Task) -> bool:
        saved = await save(task)
        if saved and task.status is TaskStatus.PROCESSING:
            writes.append((asyncio.get_running_loop().time(), task))
        return saved

    core.tasks.save = recording  # type: ignore[method-assign]
    return writes


def loop_time() -> float:
    return asyncio.get_running_loop().time()


async def test_a_long_run_writes_its_latest_report_once_per_interval(registry: HandlerRegistry) -> None:
    core = progress_core(registry)
    writes = record_progress_writes(core)
    reports = 5_000

    @registry.handler
    async def rows(_: None, ctx: TaskContext) -> str:
        for row in range(reports):  # 5 s, reporting every millisecond
            ctx.progress(row / reports, f"row {row}")
            await asyncio.sleep(0.001)
        ctx.progress(1, "all rows")
        return "done"

    task = await core.service.submit("rows", None)
    started = loop_time()
    outcome, _ = await deliver(core.queue, core.processor)
    assert outcome is Outcome.COMPLETED
    # 5,000 reports over 5 s: one write per 0.5 s, the first 0.5 s after the start.
    assert 9 <= len(writes) <= 10
    times = [at - started for at, _ in writes]
    assert times[0] == pytest.approx(INTERVAL_S, abs=0.01)
    assert all(b - a >= INTERVAL_S - 1e-9 for a, b in itertools.pairwise(times))
    fractions = [task.progress or 0.0 for _, task in writes]
    assert fractions == sorted(fractions)  # the latest report each time, in order
    assert [task.version for _, task in writes] == list(range(3, 3 + len(writes)))
    done = core.db.tasks[task.id]
    # The last report went with the verdict instead of a write of its own.
    assert (done.status, done.progress, done.progress_message) == (TaskStatus.COMPLETED, 1.0, "all rows")
    assert done.version == 3 + len(writes)


async def test_a_task_done_within_the_interval_writes_no_progress_of_its_own(
    registry: HandlerRegistry,
) -> None:
    core = progress_core(registry)
    writes = record_progress_writes(core)

    @registry.handler
    async def tight(_: None, ctx: TaskContext) -> int:
        for n in range(10_000):  # a tight loop, never yielding to the event loop
            ctx.progress(n / 9_999, f"item {n}")
        return 10_000

    task = await core.service.submit("tight", None)
    assert (await deliver(core.queue, core.processor))[0] is Outcome.COMPLETED
    await core.aclose()
    assert writes == []
    done = core.db.tasks[task.id]
    assert (done.version, done.progress, done.progress_message) == (3, 1.0, "item 9999")
    assert [change.status for change in core.changes.announced] == [
        TaskStatus.PROCESSING,
        TaskStatus.COMPLETED,
    ]


async def test_reports_are_cached_and_announced_as_transitions(registry: HandlerRegistry) -> None:
    core = progress_core(registry)
    gate = asyncio.Event()

    @registry.handler
    async def halfway(_: None, ctx: TaskContext) -> None:
        ctx.progress(0.5, "halfway")
        await gate.wait()

    task = await core.service.submit("halfway", None)
    running = asyncio.create_task(deliver(core.queue, core.processor))
    await eventually(lambda: core.db.tasks[task.id].progress == 0.5)
    stored = core.db.tasks[task.id]
    assert core.cache.entries[task.id][0] == stored
    assert (await core.service.get(task.id)).progress_message == "halfway"
    gate.set()
    await running
    await core.aclose()
    assert core.changes.announced == [
        TaskChange(task.id, 2, TaskStatus.PROCESSING),
        TaskChange(task.id, 3, TaskStatus.PROCESSING),  # the report
        TaskChange(task.id, 4, TaskStatus.COMPLETED),
    ]


async def test_a_sync_handler_reports_from_its_thread(registry: HandlerRegistry) -> None:
    core = progress_core(registry, progress_interval_s=0.05)
    gate = threading.Event()
    loop_thread = threading.get_ident()
    threads: list[int] = []

    @registry.handler
    def copy(_: None, ctx: TaskContext) -> str:
        threads.append(threading.get_ident())
        ctx.progress(0.5, "half copied")
        gate.wait(timeout=30)  # the test lets it go on once it has seen the report stored
        ctx.progress(0.9, "almost")
        return "copied"

    task = await core.service.submit("copy", None)
    running = asyncio.create_task(deliver(core.queue, core.processor))
    await eventually(lambda: core.db.tasks[task.id].progress == 0.5, within=30)
    assert core.db.tasks[task.id].progress_message == "half copied"
    gate.set()
    assert (await running)[0] is Outcome.COMPLETED
    assert threads
    assert threads[0] != loop_thread
    done = core.db.tasks[task.id]
    assert (done.progress, done.progress_message) == (1.0, "almost")


async def test_a_tight_loop_in_a_thread_costs_a_handful_of_writes(registry: HandlerRegistry) -> None:
    """The count of writes depends on how long the loop takes (real time, in
    a thread), never on how many reports it makes."""
    core = progress_core(registry)
    writes = record_progress_writes(core)
    reports = 100_000

    @registry.handler
    def crunch(_: None, ctx: TaskContext) -> int:
        for n in range(reports):
            ctx.progress(n / (reports - 1), f"item {n}")
        return reports

    task = await core.service.submit("crunch", None)
    started = loop_time()
    assert (await deliver(core.queue, core.processor))[0] is Outcome.COMPLETED
    elapsed = loop_time() - started
    assert len(writes) <= elapsed / INTERVAL_S + 1
    done = core.db.tasks[task.id]
    assert (done.progress, done.progress_message) == (1.0, f"item {reports - 1}")


async def test_a_bad_report_fails_the_attempt_that_made_it(registry: HandlerRegistry) -> None:
    core = progress_core(registry)

    @registry.handler(max_attempts=1)
    async def overshoot(_: None, ctx: TaskContext) -> None:
        ctx.progress(2)

    task = await core.service.submit("overshoot", None)
    assert (await deliver(core.queue, core.processor))[0] is Outcome.FAILED
    assert core.db.tasks[task.id].error == "ValueError: progress must be from 0 to 1, got 2"


async def test_a_failed_attempt_keeps_its_progress_until_the_next_one_starts(
    registry: HandlerRegistry,
) -> None:
    core = progress_core(registry)
    calls = 0

    @registry.handler(max_attempts=2)
    async def flaky(_: None, ctx: TaskContext) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            ctx.progress(0.3, "got a third of the way")
            raise RuntimeError("lost the connection")
        await asyncio.sleep(1)  # the second attempt has not reported yet at 0.5 s
        return "ok"

    task = await core.service.submit("flaky", None)
    assert (await deliver(core.queue, core.processor))[0] is Outcome.RETRY_SCHEDULED
    retrying = core.db.tasks[task.id]
    assert (retrying.status, retrying.progress, retrying.progress_message) == (
        TaskStatus.PENDING,
        0.3,
        "got a third of the way",
    )
    await asyncio.sleep(1)  # the retry's delay
    second = asyncio.create_task(deliver(core.queue, core.processor))
    await eventually(lambda: core.db.tasks[task.id].status is TaskStatus.PROCESSING)
    assert core.db.tasks[task.id].progress is None
    assert (await second)[0] is Outcome.COMPLETED


def reporting_forever(registry: HandlerRegistry, stopped: asyncio.Event) -> None:
    """``endless``: reports every 10 ms until stopped, then sets ``stopped``."""

    @registry.handler
    async def endless(_: None, ctx: TaskContext) -> None:
        step = 0
        try:
            while True:
                step += 1
                ctx.progress(min(step / 1000, 1), f"step {step}")
                await asyncio.sleep(0.01)
        finally:
            stopped.set()


async def test_a_cancel_while_reporting_wins_and_nothing_is_written_after_it(
    registry: HandlerRegistry,
) -> None:
    core = progress_core(registry)
    writes = record_progress_writes(core)
    stopped = asyncio.Event()
    reporting_forever(registry, stopped)
    task = await core.service.submit("endless", None)
    running = asyncio.create_task(deliver(core.queue, core.processor))
    await asyncio.sleep(2.2)  # four reports stored
    assert len(writes) == 4
    cancelled = await core.service.cancel(task.id)
    cancelled_at = loop_time()
    outcome, _ = await running
    assert outcome is Outcome.SUPERSEDED
    assert stopped.is_set()
    # Stopped by its next progress write (refused), well before the next heartbeat (10 s).
    assert loop_time() - cancelled_at <= INTERVAL_S
    assert len(writes) == 4
    assert core.db.tasks[task.id] == cancelled
    assert cancelled.status is TaskStatus.CANCELLED
    assert cancelled.progress_message == writes[-1][1].progress_message  # as far as it got
    assert core.cache.entries[task.id][0] == cancelled  # the cache did not move back
    assert core.queue.acked == 1


async def test_an_attempt_taken_over_while_reporting_writes_nothing_more(registry: HandlerRegistry) -> None:
    """Its lease was released by a sweeper and another worker claimed the task."""
    core = progress_core(registry)
    writes = record_progress_writes(core)
    stopped = asyncio.Event()
    reporting_forever(registry, stopped)
    task = await core.service.submit("endless", None)
    running = asyncio.create_task(deliver(core.queue, core.processor))
    await asyncio.sleep(1.2)
    assert len(writes) == 2
    released = core.db.tasks[task.id].release(core.clock.now())
    assert await core.transitions.record(released, publish=False)
    # Another worker (alone: an attempt released beside others is suspect).
    taken = await core.tasks.claim(task.id, core.clock.now(), core.config.lease, alone=True)
    assert taken is not None
    outcome, _ = await running
    assert outcome is Outcome.SUPERSEDED
    assert stopped.is_set()
    assert len(writes) == 2
    assert core.db.tasks[task.id] == taken
    assert taken.progress is None  # the new attempt starts without the old one's progress


async def test_reports_keep_the_lease_that_heartbeats_renewed(registry: HandlerRegistry) -> None:
    """Renewals and reports take turns on one version: a report never puts an
    older lease back, and a renewal after a report is not refused."""
    core = progress_core(registry, lease_s=3)  # a heartbeat every second
    leases: list[bool] = []

    @registry.handler
    async def steady(_: None, ctx: TaskContext) -> str:
        for step in range(40):  # 12 s: four leases, renewals and reports interleaved
            ctx.progress(step / 40, f"step {step}")
            await asyncio.sleep(0.3)
            row = core.db.tasks[ctx.task_id]
            leases.append(
                row.lease_until is not None and row.lease_until > core.clock.now() + core.config.lease / 2
            )
        return "done"

    task = await core.service.submit("steady", None)
    assert (await deliver(core.queue, core.processor))[0] is Outcome.COMPLETED
    # After the first second, the lease is always at least half a lease ahead.
    assert all(leases[4:])
    assert core.db.tasks[task.id].result == "done"


async def test_a_write_that_landed_unconfirmed_is_taken_as_the_attempts_own(
    registry: HandlerRegistry,
) -> None:
    """The database stored a report but the answer was lost: the next fenced
    write finds the row at a version it did not know, still this attempt."""
    core = progress_core(registry, lease_s=3)
    save = core.tasks.save
    broken = 0

    async def answer_lost(task: Task) -> bool:
        nonlocal broken
        saved = await save(task)
        if task.status is TaskStatus.PROCESSING and broken == 0:
            broken += 1
            raise RepositoryUnavailable("connection lost before the commit was confirmed")
        return saved

    core.tasks.save = answer_lost  # type: ignore[method-assign]

    @registry.handler
    async def patient(_: None, ctx: TaskContext) -> str:
        for step in range(10):
            ctx.progress(step / 10)
            await asyncio.sleep(0.4)
        return "done"

    task = await core.service.submit("patient", None)
    assert (await deliver(core.queue, core.processor))[0] is Outcome.COMPLETED
    assert broken == 1
    assert core.db.tasks[task.id].result == "done"


async def test_a_shutdown_mid_run_unclaims_from_the_latest_report(registry: HandlerRegistry) -> None:
    core = progress_core(registry)
    stopped = asyncio.Event()
    reporting_forever(registry, stopped)
    task = await core.service.submit("endless", None)
    async with core.queue.consume(prefetch=1) as consumer:
        delivery = await consumer.next()
        running = asyncio.create_task(core.processor.process(delivery))
        await asyncio.sleep(1.7)  # three reports stored, a fourth waiting
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    back = core.db.tasks[task.id]
    assert (back.status, back.attempts, back.version) == (
        TaskStatus.PENDING,
        0,
        6,
    )  # claim, 3 reports, unclaim


def test_a_context_without_a_worker_checks_reports_and_keeps_them_nowhere() -> None:
    """A handler called directly (a test of the handler itself) may still report."""
    reports: list[Progress] = []
    task = Task.created(1, new_task())
    TaskContext(task).progress(0.5, "fine")
    TaskContext(task, report=reports.append).progress(1, "x" * 500)
    assert reports[0].fraction == 1.0
    assert len(reports[0].message or "") == 200
    with pytest.raises(ValueError, match="from 0 to 1"):
        TaskContext(task).progress(-1)
