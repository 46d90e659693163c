"""What the core reports through the telemetry port, read from the memory adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from taskcore import HandlerRegistry, RetryPolicy, Sweeper, TaskProcessor, TaskService, Worker
from taskcore.adapters.memory import MemoryCache, MemoryDatabase, MemoryQueue, MemoryTasks, MemoryTelemetry
from taskcore.config import CoreConfig
from taskcore.errors import CacheUnavailable
from taskcore.telemetry import MeteredCache
from tests.core import Core, ManualClock


@pytest.fixture
def telemetry(core: Core) -> MemoryTelemetry:
    """The telemetry the conftest's core reports to."""
    return core.telemetry


async def eventually(check: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll ``check`` on the loop's time: under ``looptime`` the deadline is fake time too."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def run_until(worker: Worker, done: Callable[[], Awaitable[None]]) -> None:
    running = asyncio.create_task(worker.run())
    try:
        await done()
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)


async def take_one(queue: MemoryQueue, processor: TaskProcessor) -> None:
    async with queue.consume(prefetch=1) as consumer:
        await processor.process(await consumer.next())


async def test_a_submit_is_counted_once_even_when_replayed(
    service: TaskService, telemetry: MemoryTelemetry
) -> None:
    await service.submit("reverse", "a")
    await service.submit_once("reverse", "b", idempotency_key="k")
    await service.submit_once("reverse", "b", idempotency_key="k")  # the replay stores nothing
    assert telemetry.submitted == {"reverse": 2}


async def test_a_run_reports_its_wait_its_run_time_and_its_verdict(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    clock: ManualClock,
    telemetry: MemoryTelemetry,
) -> None:
    await service.submit("reverse", "a")
    clock.advance(2.5)  # it waits on the queue
    await take_one(queue, processor)
    assert telemetry.waits == [("reverse", 2.5)]
    assert [(task_type, seconds >= 0) for task_type, seconds in telemetry.runs] == [("reverse", True)]
    assert telemetry.settled == {("reverse", "completed"): 1}


async def test_a_scheduled_task_waits_from_when_it_was_due(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    clock: ManualClock,
    telemetry: MemoryTelemetry,
) -> None:
    await service.submit("reverse", "a", delay=timedelta(seconds=0.05))
    assert queue.delayed == 1  # the memory queue holds it back until due by the core's clock
    clock.advance(10.05)  # due after 0.05 s, claimed 10 s later
    assert queue.release_due() == 1
    await take_one(queue, processor)
    [(_, waited)] = telemetry.waits
    assert waited == pytest.approx(10.0)


async def test_retries_then_a_final_failure_are_counted_by_type(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    clock: ManualClock,
    telemetry: MemoryTelemetry,
) -> None:
    @registry.handler(max_attempts=2, retry=RetryPolicy(base_s=0.01, cap_s=0.01))
    async def flaky(_: str) -> None:
        raise RuntimeError("no")

    await service.submit("flaky", "x")
    await take_one(queue, processor)
    assert (queue.delayed, queue.depth) == (1, 0)  # the retry waits out its delay
    clock.advance(1)
    assert queue.release_due() == 1
    await take_one(queue, processor)
    assert telemetry.settled == {("flaky", "retried"): 1, ("flaky", "failed"): 1}
    assert len(telemetry.runs) == 2


async def test_dead_letters_are_counted_by_reason(
    processor: TaskProcessor, queue: MemoryQueue, telemetry: MemoryTelemetry
) -> None:
    await queue.publish(b"not a task id")
    await queue.publish(b"424242")
    await take_one(queue, processor)
    await take_one(queue, processor)
    assert telemetry.dead_lettered == {"invalid_message": 1, "unknown_task": 1}
    assert telemetry.settled == {}


@pytest.mark.looptime  # the polls and the worker's timers run on fake loop time
async def test_the_worker_reports_its_tasks_in_flight(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
    telemetry: MemoryTelemetry,
) -> None:
    release = asyncio.Event()

    @registry.handler
    async def hold(_: int) -> None:
        await release.wait()

    ids = [(await service.submit("hold", i)).id for i in range(3)]
    worker = Worker(processor=processor, queue=queue, concurrency=4, telemetry=telemetry)

    async def three_running_then_done() -> None:
        await eventually(lambda: telemetry.in_flight == 3)
        release.set()
        await eventually(lambda: all(db.tasks[i].is_final for i in ids) and not telemetry.in_flight)

    await run_until(worker, three_running_then_done)
    assert (telemetry.in_flight_peak, telemetry.in_flight) == (3, 0)


async def test_sweeper_recoveries_are_counted(
    service: TaskService,
    sweeper: Sweeper,
    tasks: MemoryTasks,
    db: MemoryDatabase,
    clock: ManualClock,
    config: CoreConfig,
    telemetry: MemoryTelemetry,
) -> None:
    lapsing = await service.submit("reverse", "a")
    await tasks.claim(lapsing.id, clock.now(), config.lease)  # a worker that then dies
    dying = await service.submit("reverse", "b")
    for _ in range(dying.max_attempts - 1):
        await tasks.claim(dying.id, clock.now(), config.lease, alone=True)
        clock.advance(config.lease_s + 1)
        await sweeper.sweep_once()
    await tasks.claim(dying.id, clock.now(), config.lease, alone=True)  # its last attempt
    clock.advance(config.lease_s + 1)
    await sweeper.sweep_once()
    assert telemetry.recovered["released"] == 1 + (dying.max_attempts - 1)  # a once, b until its last
    assert telemetry.recovered["failed"] == 1
    assert telemetry.settled == {("reverse", "failed"): 1}

    db.dispatched_at.clear()  # as if no publish had been confirmed
    clock.advance(config.redispatch_grace_s + 1)
    await sweeper.sweep_once()
    assert telemetry.recovered["redispatched"] >= 1


async def test_the_metered_cache_counts_hits_misses_and_errors(
    service: TaskService, cache: MemoryCache, telemetry: MemoryTelemetry
) -> None:
    task = await service.submit("reverse", "a")
    metered = MeteredCache(cache, telemetry)
    assert await metered.get(task.id) is not None
    assert await metered.get(999) is None
    cache.available = False
    with pytest.raises(CacheUnavailable):
        await metered.get(task.id)
    with pytest.raises(CacheUnavailable):
        await metered.put(task, None)
    assert telemetry.cache_reads == {"hit": 1, "miss": 1, "error": 1}
    assert telemetry.cache_write_failures == 1
