"""Leases, heartbeats, the sweeper, the outbox, cancel and re-queue, on the memory adapters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskcore import (
    CoreConfig,
    Dispatcher,
    HandlerRegistry,
    InvalidTransition,
    Outcome,
    RetryPolicy,
    Sweeper,
    TaskNotFound,
    TaskProcessor,
    TaskService,
    TaskStatus,
)
from taskcore.adapters.memory import MemoryCache, MemoryDatabase, MemoryQueue, MemoryTasks
from taskcore.adapters.memory.queue import MemoryDelivery
from taskcore.errors import RepositoryUnavailable
from taskcore.model.query import TaskQuery
from taskcore.model.task import NewTask, Task
from tests.core import Core, LoopClock, ManualClock, build_core, quick_config


def loop_time_core(registry: HandlerRegistry) -> Core:
    """The system on the event loop's clock with a 0.15 s lease, for heartbeat
    timing: under ``looptime`` the handler's sleeps, the heartbeats and the
    leases all run on the same fake time, however busy the machine is."""
    return build_core(clock=LoopClock(), registry=registry, config=quick_config(lease_s=0.15))


async def deliver(queue: MemoryQueue, processor: TaskProcessor) -> tuple[Outcome, MemoryDelivery]:
    async with queue.consume(prefetch=1) as consumer:
        delivery = await consumer.next()
        outcome = await processor.process(delivery)
        assert delivery.settled
        return outcome, delivery


async def drain(queue: MemoryQueue) -> list[bytes]:
    bodies = []
    async with queue.consume(prefetch=1000) as consumer:
        while queue.depth:
            delivery = await consumer.next()
            bodies.append(delivery.body)
            await delivery.ack()
    return bodies


async def test_a_confirmed_publish_is_recorded_in_the_row(
    service: TaskService, dispatcher: Dispatcher, db: MemoryDatabase
) -> None:
    task = await service.submit("reverse", "a")
    await dispatcher.aclose()
    assert task.id in db.dispatched_at


@pytest.mark.looptime  # the dispatcher's flush window is an asyncio sleep: fake loop time
async def test_confirmations_are_written_in_batches() -> None:
    core = build_core(clock=LoopClock(), flush_delay_s=0.05)
    calls: list[int] = []
    original = core.tasks.mark_dispatched

    async def counting(confirmed):  # type: ignore[no-untyped-def]
        calls.append(len(confirmed))
        await original(confirmed)

    core.tasks.mark_dispatched = counting  # type: ignore[method-assign]
    tasks = [await core.service.submit("reverse", "x") for _ in range(20)]
    assert calls == []  # confirmed by the broker, not written yet: the window is still open
    await asyncio.sleep(0.1)  # past the 0.05 s window, in loop time
    assert calls == [20]  # one UPDATE for the whole burst
    assert all(task.id in core.db.dispatched_at for task in tasks)
    await core.aclose()


async def test_an_unpublished_task_is_dispatched_by_the_sweeper(
    service: TaskService,
    sweeper: Sweeper,
    queue: MemoryQueue,
    db: MemoryDatabase,
    clock: ManualClock,
) -> None:
    queue.available = False
    task = await service.submit("reverse", "a")  # 201 all the same
    queue.available = True
    assert task.id not in db.dispatched_at
    assert (await sweeper.sweep_once()).redispatched == 0  # still within the grace period
    clock.advance(11)
    assert (await sweeper.sweep_once()).redispatched == 1
    assert await drain(queue) == [str(task.id).encode()]
    assert task.id in db.dispatched_at
    assert (await sweeper.sweep_once()).redispatched == 0  # confirmed now


async def test_a_lapsed_lease_is_released_and_dispatched_again(
    service: TaskService,
    sweeper: Sweeper,
    queue: MemoryQueue,
    tasks: MemoryTasks,
    db: MemoryDatabase,
    clock: ManualClock,
    config: CoreConfig,
) -> None:
    task = await service.submit("reverse", "a")
    await drain(queue)
    await tasks.claim(task.id, clock.now(), config.lease, alone=True)  # a worker that then dies
    assert (await sweeper.sweep_once()).released == 0
    clock.advance(config.lease_s + 1)
    assert (await sweeper.sweep_once()).released == 1
    released = db.tasks[task.id]
    assert (released.status, released.attempts, released.suspect) == (TaskStatus.PENDING, 1, False)
    assert "lease expired" in (released.error or "")
    assert await drain(queue) == [str(task.id).encode()]


async def test_tasks_of_a_worker_that_died_running_several_run_alone_uncharged(
    service: TaskService,
    sweeper: Sweeper,
    queue: MemoryQueue,
    tasks: MemoryTasks,
    db: MemoryDatabase,
    clock: ManualClock,
    config: CoreConfig,
) -> None:
    """Which of them killed it cannot be told: none is charged, each runs alone next."""
    a, b = await service.submit("reverse", "a"), await service.submit("reverse", "b")
    await drain(queue)
    for task in (a, b):
        await tasks.claim(task.id, clock.now(), config.lease)  # side by side on a worker that dies
    clock.advance(config.lease_s + 1)
    assert (await sweeper.sweep_once()).released == 2
    for task in (a, b):
        released = db.tasks[task.id]
        assert (released.status, released.attempts, released.suspect) == (TaskStatus.PENDING, 0, True)
    # Their wake-ups say so; a worker that would run one beside others cannot claim it.
    assert sorted(await drain(queue)) == sorted(f"{t.id} alone".encode() for t in (a, b))
    assert await tasks.claim(a.id, clock.now(), config.lease) is None
    claimed = await tasks.claim(a.id, clock.now(), config.lease, alone=True)
    assert claimed is not None
    assert (claimed.alone, claimed.attempts) == (True, 1)


async def test_a_task_that_keeps_killing_workers_ends_failed(
    service: TaskService,
    sweeper: Sweeper,
    tasks: MemoryTasks,
    db: MemoryDatabase,
    clock: ManualClock,
    config: CoreConfig,
) -> None:
    task = await service.submit("reverse", "a")
    # Beside others first (not counted, suspect), then alone until its attempts are spent.
    assert await tasks.claim(task.id, clock.now(), config.lease) is not None
    clock.advance(config.lease_s + 1)
    await sweeper.sweep_once()
    for _ in range(task.max_attempts):
        assert await tasks.claim(task.id, clock.now(), config.lease, alone=True) is not None
        clock.advance(config.lease_s + 1)
        await sweeper.sweep_once()
    final = db.tasks[task.id]
    assert (final.status, final.attempts) == (TaskStatus.FAILED, 3)


async def test_the_sweeper_does_not_undo_a_completion_that_won_the_race(
    core: Core,
    service: TaskService,
    sweeper: Sweeper,
    tasks: MemoryTasks,
    db: MemoryDatabase,
    clock: ManualClock,
    config: CoreConfig,
) -> None:
    task = await service.submit("reverse", "a")
    claimed = await tasks.claim(task.id, clock.now(), config.lease)
    assert claimed is not None
    clock.advance(config.lease_s + 1)
    lapsed = await core.recovery.lapsed(clock.now(), 10)  # the sweeper has read the row...
    assert await tasks.save(claimed.complete("a", clock.now()))  # ...the worker completes...
    released = lapsed[0].release(clock.now())
    assert not await tasks.save(released)  # ...and the sweeper's write does not land
    assert db.tasks[task.id].status is TaskStatus.COMPLETED
    assert (await sweeper.sweep_once()).released == 0


@pytest.mark.looptime
async def test_a_long_task_keeps_its_lease_by_heartbeat(registry: HandlerRegistry) -> None:
    core = loop_time_core(registry)
    runs = 0

    @registry.handler
    async def long(_: str) -> str:
        nonlocal runs
        runs += 1
        for _beat in range(10):  # 0.6 s of loop time, four leases long
            await asyncio.sleep(0.06)
            assert (await core.sweeper.sweep_once()).released == 0
        return "done"

    task = await core.service.submit("long", "a")
    started = asyncio.get_running_loop().time()
    assert (await deliver(core.queue, core.processor))[0] is Outcome.COMPLETED
    assert asyncio.get_running_loop().time() - started > 3 * core.config.lease_s  # it outlived its lease
    assert runs == 1
    assert core.db.tasks[task.id].attempts == 1


@pytest.mark.looptime
async def test_cancelling_a_running_task_stops_its_handler(registry: HandlerRegistry) -> None:
    core = loop_time_core(registry)
    started, stopped = asyncio.Event(), asyncio.Event()

    @registry.handler
    async def forever(_: str) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    task = await core.service.submit("forever", "a")
    running = asyncio.create_task(deliver(core.queue, core.processor))
    await started.wait()
    cancelled = await core.service.cancel(task.id)
    assert cancelled.status is TaskStatus.CANCELLED
    outcome, _ = await asyncio.wait_for(running, 2)  # the next heartbeat (every 0.05 s) notices
    assert outcome is Outcome.SUPERSEDED
    assert stopped.is_set()
    assert core.db.tasks[task.id].status is TaskStatus.CANCELLED


async def test_cancel_pending_then_finished_is_a_conflict(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue
) -> None:
    task = await service.submit("reverse", "a")
    assert (await service.cancel(task.id)).status is TaskStatus.CANCELLED
    assert (await deliver(queue, processor))[0] is Outcome.SKIPPED  # never runs
    with pytest.raises(InvalidTransition):
        await service.cancel(task.id)
    with pytest.raises(TaskNotFound):
        await service.cancel(999)


async def test_retry_a_failed_task(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    tasks: MemoryTasks,
    db: MemoryDatabase,
) -> None:
    fail = True

    @registry.handler(max_attempts=1)
    async def once(x: str) -> str:
        if fail:
            raise RuntimeError("down")
        return x

    task = await service.submit("once", "a")
    assert (await deliver(queue, processor))[0] is Outcome.FAILED
    assert [t.id for t in await tasks.find(TaskQuery(status=TaskStatus.FAILED))] == [task.id]
    fail = False
    again = await service.retry(task.id)
    assert (again.status, again.attempts, again.error) == (TaskStatus.PENDING, 0, None)
    assert (await deliver(queue, processor))[0] is Outcome.COMPLETED
    assert db.tasks[task.id].result == "a"
    with pytest.raises(InvalidTransition):
        await service.retry(task.id)


async def test_a_handlers_own_retry_policy(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
    clock: ManualClock,
) -> None:
    @registry.handler(retry=RetryPolicy(base_s=100, cap_s=100))
    async def patient(_: str) -> None:
        raise RuntimeError("later")

    task = await service.submit("patient", "a")
    await deliver(queue, processor)
    wait = db.tasks[task.id].run_at - clock.now()
    assert timedelta(seconds=50) <= wait <= timedelta(seconds=100)
    assert queue.delayed == 1  # its wake-up waits out the same delay
    await queue.close()


async def test_a_cache_write_missed_in_an_outage_is_replayed_when_the_cache_is_back(
    core: Core,
    service: TaskService,
    sweeper: Sweeper,
    tasks: MemoryTasks,
    cache: MemoryCache,
    clock: ManualClock,
    config: CoreConfig,
) -> None:
    shared = core.status_cache  # one per process, as the container wires it: the sweeper's too
    task = await service.submit("reverse", "a")
    claimed = await tasks.claim(task.id, clock.now(), config.lease)
    assert claimed is not None
    await shared.remember(claimed)  # the PROCESSING entry of the claim
    cache.available = False
    done = claimed.complete("a", clock.now())
    assert await tasks.save(done)
    await shared.remember(done)  # missed: the cache is down
    assert shared.unwritten == 1
    cache.available = True
    assert (await cache.get(task.id)).status is TaskStatus.PROCESSING  # type: ignore[union-attr]
    await sweeper.sweep_once()
    assert (await cache.get(task.id)).status is TaskStatus.COMPLETED  # type: ignore[union-attr]
    assert shared.unwritten == 0


NOW = datetime(2026, 1, 1, tzinfo=UTC)
NEW = NewTask(type="reverse", input="x", max_attempts=3, run_at=NOW, created_at=NOW)


async def test_a_backlog_of_missed_writes_is_replayed_once_in_the_background(
    core: Core, cache: MemoryCache
) -> None:
    """When the cache comes back, the requests in flight must not each replay
    the whole backlog inside their own request (seen as seconds-long POSTs)."""
    shared = core.status_cache
    cache.available = False
    for task_id in range(1, 101):
        await shared.remember(Task.created(task_id, NEW))
    assert shared.unwritten == 100
    cache.available = True
    puts = 0
    original = cache.put

    async def counting(written: Task, ttl: Any) -> None:
        nonlocal puts
        puts += 1
        await asyncio.sleep(0)  # a round trip, so concurrent callers overlap
        await original(written, ttl)

    cache.put = counting  # type: ignore[method-assign,assignment]
    await asyncio.gather(*(shared.remember(Task.created(200 + i, NEW)) for i in range(20)))
    assert puts < 100  # the requests did not wait for the backlog
    for _ in range(1000):
        if not shared.unwritten:
            break
        await asyncio.sleep(0)
    assert shared.unwritten == 0
    assert puts == 120  # each of the 20 writes, and the backlog once


async def test_completed_tasks_are_kept_in_the_process_and_nothing_else_is(config: CoreConfig) -> None:
    """COMPLETED is final for good (retry takes FAILED or CANCELLED only), so a
    finished task read again costs no round trip; other states always go to
    the cache, whose entries can move on."""
    core = build_core(config=config, completed_memo=2)
    shared = core.status_cache
    pending = Task.created(1, NEW)
    done = [Task.created(task_id, NEW).claim(NOW, config.lease).complete("x", NOW) for task_id in (2, 3, 4)]
    for task in (pending, *done):
        await shared.remember(task)
    core.cache.available = False
    assert await shared.lookup(1) is None  # PENDING: only the (unavailable) cache knows
    assert await shared.lookup(2) is None  # the oldest completed one left the bounded memo
    assert await shared.lookup(3) == done[1]
    assert await shared.lookup(4) == done[2]


async def test_the_sweeper_forgets_idempotency_keys_past_their_time(
    service: TaskService,
    sweeper: Sweeper,
    tasks: MemoryTasks,
    db: MemoryDatabase,
    clock: ManualClock,
    config: CoreConfig,
) -> None:
    old, _ = await service.submit_once("reverse", "a", idempotency_key="old", owner="alice")
    clock.advance(config.idempotency_ttl_s - 10)
    young, _ = await service.submit_once("reverse", "b", idempotency_key="young", owner="alice")
    assert (await sweeper.sweep_once()).keys_forgotten == 0  # neither has expired yet

    clock.advance(11)
    assert (await sweeper.sweep_once()).keys_forgotten == 1
    assert set(db.idempotency_keys) == {("alice", "young")}
    assert await tasks.get(old.id) == old  # the task itself stays
    again, created = await service.submit_once("reverse", "b", idempotency_key="young", owner="alice")
    assert (again, created) == (young, False)


async def test_a_failed_key_purge_keeps_the_sweeps_report(
    core: Core,
    service: TaskService,
    sweeper: Sweeper,
    queue: MemoryQueue,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue.available = False
    await service.submit("reverse", "a")
    queue.available = True
    clock.advance(11)

    async def unavailable(used_before: Any, limit: int) -> int:
        raise RepositoryUnavailable("statement timeout")

    core.recovery.forget_idempotency_keys = unavailable  # type: ignore[method-assign]
    report = await sweeper.sweep_once()
    assert (report.redispatched, report.keys_forgotten) == (1, 0)
    assert "expired idempotency keys not deleted this time" in caplog.text
