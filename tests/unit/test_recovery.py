"""Leases, heartbeats, the sweeper, the outbox, cancel and re-queue, on the memory adapters."""

from __future__ import annotations

import asyncio
from datetime import timedelta
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
    SystemClock,
    TaskNotFound,
    TaskProcessor,
    TaskService,
    TaskStatus,
)
from taskcore.adapters.memory import MemoryCache, MemoryQueue, MemoryRepository
from taskcore.errors import RepositoryUnavailable
from taskcore.query import TaskQuery

from .conftest import ManualClock
from .test_processor import deliver


def real_time_system(
    repository: MemoryRepository, queue: MemoryQueue, cache: MemoryCache, registry: HandlerRegistry
) -> tuple[TaskService, TaskProcessor, Sweeper]:
    """The system on the real clock with a 0.15 s lease, for heartbeat timing."""
    config = CoreConfig(lease_s=0.15)
    clock = SystemClock()
    dispatcher = Dispatcher(repository=repository, queue=queue, clock=clock)
    parts = {"repository": repository, "cache": cache, "clock": clock, "config": config}
    return (
        TaskService(dispatcher=dispatcher, registry=registry, **parts),  # type: ignore[arg-type]
        TaskProcessor(dispatcher=dispatcher, registry=registry, **parts),  # type: ignore[arg-type]
        Sweeper(dispatcher=dispatcher, **parts),  # type: ignore[arg-type]
    )


@pytest.fixture
def sweeper(
    repository: MemoryRepository,
    dispatcher: Dispatcher,
    cache: MemoryCache,
    clock: ManualClock,
    config: CoreConfig,
) -> Sweeper:
    return Sweeper(repository=repository, dispatcher=dispatcher, cache=cache, clock=clock, config=config)


async def drain(queue: MemoryQueue) -> list[bytes]:
    bodies = []
    async with queue.consume(prefetch=1000) as consumer:
        while queue.depth:
            delivery = await consumer.next()
            bodies.append(delivery.body)
            await delivery.ack()
    return bodies


async def test_a_confirmed_publish_is_recorded_in_the_row(
    service: TaskService, dispatcher: Dispatcher, repository: MemoryRepository
) -> None:
    task = await service.submit("reverse", "a")
    await dispatcher.aclose()
    assert task.id in repository.dispatched_at


async def test_confirmations_are_written_in_batches(
    repository: MemoryRepository, queue: MemoryQueue, clock: ManualClock, service: TaskService
) -> None:
    calls: list[int] = []
    original = repository.mark_dispatched

    async def counting(ids, at):  # type: ignore[no-untyped-def]
        calls.append(len(ids))
        await original(ids, at)

    repository.mark_dispatched = counting  # type: ignore[method-assign]
    batched = Dispatcher(repository=repository, queue=queue, clock=clock, flush_delay_s=0.05)
    tasks = []
    for _ in range(20):
        task = await service.submit("reverse", "x")
        tasks.append(task)
        await batched.dispatch(task)
    await asyncio.sleep(0.1)
    assert calls[-1] == 20  # one UPDATE for the whole burst
    await batched.aclose()


async def test_an_unpublished_task_is_dispatched_by_the_sweeper(
    service: TaskService,
    sweeper: Sweeper,
    queue: MemoryQueue,
    repository: MemoryRepository,
    clock: ManualClock,
) -> None:
    queue.available = False
    task = await service.submit("reverse", "a")  # 201 all the same
    queue.available = True
    assert task.id not in repository.dispatched_at
    assert (await sweeper.sweep_once()).redispatched == 0  # still within the grace period
    clock.advance(11)
    assert (await sweeper.sweep_once()).redispatched == 1
    assert await drain(queue) == [str(task.id).encode()]
    assert task.id in repository.dispatched_at
    assert (await sweeper.sweep_once()).redispatched == 0  # confirmed now


async def test_a_lapsed_lease_is_released_and_dispatched_again(
    service: TaskService,
    sweeper: Sweeper,
    queue: MemoryQueue,
    repository: MemoryRepository,
    clock: ManualClock,
    config: CoreConfig,
) -> None:
    task = await service.submit("reverse", "a")
    await drain(queue)
    await repository.claim(task.id, clock.now(), config.lease)  # a worker that then dies
    assert (await sweeper.sweep_once()).released == 0
    clock.advance(config.lease_s + 1)
    assert (await sweeper.sweep_once()).released == 1
    released = repository.tasks[task.id]
    assert (released.status, released.attempts) == (TaskStatus.PENDING, 1)
    assert "lease expired" in (released.error or "")
    assert await drain(queue) == [str(task.id).encode()]


async def test_a_task_that_keeps_killing_workers_ends_failed(
    service: TaskService,
    sweeper: Sweeper,
    repository: MemoryRepository,
    clock: ManualClock,
    config: CoreConfig,
) -> None:
    task = await service.submit("reverse", "a")
    for _ in range(task.max_attempts):
        assert await repository.claim(task.id, clock.now(), config.lease) is not None
        clock.advance(config.lease_s + 1)
        await sweeper.sweep_once()
    final = repository.tasks[task.id]
    assert (final.status, final.attempts) == (TaskStatus.FAILED, 3)


async def test_the_sweeper_does_not_undo_a_completion_that_won_the_race(
    service: TaskService,
    sweeper: Sweeper,
    repository: MemoryRepository,
    clock: ManualClock,
    config: CoreConfig,
) -> None:
    task = await service.submit("reverse", "a")
    claimed = await repository.claim(task.id, clock.now(), config.lease)
    assert claimed is not None
    clock.advance(config.lease_s + 1)
    lapsed = await repository.lapsed(clock.now(), 10)  # the sweeper has read the row...
    assert await repository.save(claimed.complete("a", clock.now()))  # ...the worker completes...
    released = lapsed[0].release(clock.now(), "lease expired")
    assert not await repository.save(released)  # ...and the sweeper's write does not land
    assert repository.tasks[task.id].status is TaskStatus.COMPLETED
    assert (await sweeper.sweep_once()).released == 0


async def test_a_long_task_keeps_its_lease_by_heartbeat(
    repository: MemoryRepository,
    queue: MemoryQueue,
    cache: MemoryCache,
    registry: HandlerRegistry,
) -> None:
    service, processor, sweeper = real_time_system(repository, queue, cache, registry)
    runs = 0

    @registry.handler
    async def long(_: str) -> str:
        nonlocal runs
        runs += 1
        for _ in range(10):  # 0.6 s, four leases long
            await asyncio.sleep(0.06)
            assert (await sweeper.sweep_once()).released == 0
        return "done"

    task = await service.submit("long", "a")
    assert (await deliver(queue, processor))[0] is Outcome.COMPLETED
    assert runs == 1
    assert repository.tasks[task.id].attempts == 1


async def test_cancelling_a_running_task_stops_its_handler(
    repository: MemoryRepository,
    queue: MemoryQueue,
    cache: MemoryCache,
    registry: HandlerRegistry,
) -> None:
    service, processor, _ = real_time_system(repository, queue, cache, registry)
    started, stopped = asyncio.Event(), asyncio.Event()

    @registry.handler
    async def forever(_: str) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    task = await service.submit("forever", "a")
    running = asyncio.create_task(deliver(queue, processor))
    await started.wait()
    cancelled = await service.cancel(task.id)
    assert cancelled.status is TaskStatus.CANCELLED
    outcome, _ = await asyncio.wait_for(running, 2)
    assert outcome is Outcome.SUPERSEDED
    assert stopped.is_set()
    assert repository.tasks[task.id].status is TaskStatus.CANCELLED


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


async def test_requeue_a_failed_task(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    repository: MemoryRepository,
) -> None:
    fail = True

    @registry.handler(max_attempts=1)
    async def once(x: str) -> str:
        if fail:
            raise RuntimeError("down")
        return x

    task = await service.submit("once", "a")
    assert (await deliver(queue, processor))[0] is Outcome.FAILED
    assert [t.id for t in await service.find(TaskQuery(status=TaskStatus.FAILED))] == [task.id]
    fail = False
    again = await service.requeue(task.id)
    assert (again.status, again.attempts, again.error) == (TaskStatus.PENDING, 0, None)
    assert (await deliver(queue, processor))[0] is Outcome.COMPLETED
    assert repository.tasks[task.id].result == "a"
    with pytest.raises(InvalidTransition):
        await service.requeue(task.id)


async def test_a_handlers_own_retry_policy(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    repository: MemoryRepository,
    clock: ManualClock,
) -> None:
    @registry.handler(retry=RetryPolicy(base_s=100, cap_s=100))
    async def patient(_: str) -> None:
        raise RuntimeError("later")

    task = await service.submit("patient", "a")
    await deliver(queue, processor)
    wait = repository.tasks[task.id].run_at - clock.now()
    assert timedelta(seconds=50) <= wait <= timedelta(seconds=100)


async def test_a_cache_write_missed_in_an_outage_is_replayed_when_the_cache_is_back(
    repository: MemoryRepository,
    queue: MemoryQueue,
    cache: MemoryCache,
    dispatcher: Dispatcher,
    clock: ManualClock,
    registry: HandlerRegistry,
    config: CoreConfig,
) -> None:
    from taskcore.status_cache import StatusCache

    shared = StatusCache(cache, config)  # one per process, as the container wires it
    service = TaskService(
        repository=repository,
        dispatcher=dispatcher,
        cache=shared,
        clock=clock,
        registry=registry,
        config=config,
    )
    sweeper = Sweeper(repository=repository, dispatcher=dispatcher, cache=shared, clock=clock, config=config)
    task = await service.submit("reverse", "a")
    claimed = await repository.claim(task.id, clock.now(), config.lease)
    assert claimed is not None
    await shared.remember(claimed)  # the PROCESSING entry of the claim
    cache.available = False
    done = claimed.complete("a", clock.now())
    assert await repository.save(done)
    await shared.remember(done)  # missed: the cache is down
    assert shared.unwritten == 1
    cache.available = True
    assert (await cache.get(task.id)).status is TaskStatus.PROCESSING  # type: ignore[union-attr]
    await sweeper.sweep_once()
    assert (await cache.get(task.id)).status is TaskStatus.COMPLETED  # type: ignore[union-attr]
    assert shared.unwritten == 0


async def test_a_backlog_of_missed_writes_is_replayed_once_in_the_background(
    cache: MemoryCache, config: CoreConfig
) -> None:
    """When the cache comes back, the requests in flight must not each replay
    the whole backlog inside their own request (seen as seconds-long POSTs)."""
    from datetime import UTC, datetime

    from taskcore.status_cache import StatusCache
    from taskcore.task import NewTask, Task

    now = datetime(2026, 1, 1, tzinfo=UTC)

    def task(task_id: int) -> Task:
        return Task.created(
            task_id, NewTask(type="reverse", input="x", max_attempts=3, run_at=now, created_at=now)
        )

    shared = StatusCache(cache, config)
    cache.available = False
    for task_id in range(1, 101):
        await shared.remember(task(task_id))
    assert shared.unwritten == 100
    cache.available = True
    puts = 0
    original = cache.put

    async def counting(written: Task, ttl: Any) -> None:
        nonlocal puts
        puts += 1
        await asyncio.sleep(0)  # a round trip, so concurrent callers overlap
        await original(written, ttl)

    cache.put = counting  # type: ignore[method-assign]
    await asyncio.gather(*(shared.remember(task(200 + i)) for i in range(20)))
    assert puts < 100  # the requests did not wait for the backlog
    for _ in range(1000):
        if not shared.unwritten:
            break
        await asyncio.sleep(0)
    assert shared.unwritten == 0
    assert puts == 120  # each of the 20 writes, and the backlog once


async def test_completed_tasks_are_kept_in_the_process_and_nothing_else_is(
    cache: MemoryCache, config: CoreConfig
) -> None:
    """COMPLETED is final for good (retry takes FAILED or CANCELLED only), so a
    finished task read again costs no round trip; other states always go to
    the cache, whose entries can move on."""
    from datetime import UTC, datetime

    from taskcore.status_cache import StatusCache
    from taskcore.task import NewTask, Task

    now = datetime(2026, 1, 1, tzinfo=UTC)
    new = NewTask(type="reverse", input="x", max_attempts=3, run_at=now, created_at=now)
    shared = StatusCache(cache, config, completed_memo=2)
    pending = Task.created(1, new)
    done = [Task.created(task_id, new).claim(now, config.lease).complete("x", now) for task_id in (2, 3, 4)]
    for task in (pending, *done):
        await shared.remember(task)
    cache.available = False
    assert await shared.lookup(1) is None  # PENDING: only the (unavailable) cache knows
    assert await shared.lookup(2) is None  # the oldest completed one left the bounded memo
    assert await shared.lookup(3) == done[1]
    assert await shared.lookup(4) == done[2]


async def test_the_sweeper_forgets_idempotency_keys_past_their_time(
    service: TaskService,
    sweeper: Sweeper,
    repository: MemoryRepository,
    clock: ManualClock,
    config: CoreConfig,
) -> None:
    old, _ = await service.submit_once("reverse", "a", idempotency_key="old", owner="alice")
    clock.advance(config.idempotency_ttl_s - 10)
    young, _ = await service.submit_once("reverse", "b", idempotency_key="young", owner="alice")
    assert (await sweeper.sweep_once()).keys_forgotten == 0  # neither has expired yet

    clock.advance(11)
    assert (await sweeper.sweep_once()).keys_forgotten == 1
    assert set(repository.idempotency_keys) == {("alice", "young")}
    assert await repository.get(old.id) == old  # the task itself stays
    again, created = await service.submit_once("reverse", "b", idempotency_key="young", owner="alice")
    assert (again, created) == (young, False)


async def test_a_failed_key_purge_keeps_the_sweeps_report(
    service: TaskService,
    sweeper: Sweeper,
    queue: MemoryQueue,
    repository: MemoryRepository,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue.available = False
    await service.submit("reverse", "a")
    queue.available = True
    clock.advance(11)

    async def unavailable(used_before: Any, limit: int) -> int:
        raise RepositoryUnavailable("statement timeout")

    repository.forget_idempotency_keys = unavailable  # type: ignore[method-assign]
    report = await sweeper.sweep_once()
    assert (report.redispatched, report.keys_forgotten) == (1, 0)
    assert "expired idempotency keys not deleted this time" in caplog.text
