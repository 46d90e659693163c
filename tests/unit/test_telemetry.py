"""What the core reports through the telemetry port, read from the memory adapter."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from taskcore import (
    CoreConfig,
    Dispatcher,
    HandlerRegistry,
    RetryPolicy,
    Sweeper,
    TaskProcessor,
    TaskService,
    Worker,
)
from taskcore.adapters.memory import MemoryCache, MemoryQueue, MemoryRepository, MemoryTelemetry
from taskcore.errors import CacheUnavailable
from taskcore.telemetry import MeteredCache

from .conftest import ManualClock
from .test_worker import eventually, run_until


@pytest.fixture
def telemetry() -> MemoryTelemetry:
    return MemoryTelemetry()


@pytest.fixture
def parts(
    repository: MemoryRepository,
    dispatcher: Dispatcher,
    cache: MemoryCache,
    clock: ManualClock,
    config: CoreConfig,
    telemetry: MemoryTelemetry,
) -> dict[str, object]:
    return {
        "repository": repository,
        "dispatcher": dispatcher,
        "cache": cache,
        "clock": clock,
        "config": config,
        "telemetry": telemetry,
    }


@pytest.fixture
def service(parts: dict[str, object], registry: HandlerRegistry) -> TaskService:
    return TaskService(registry=registry, **parts)  # type: ignore[arg-type]


@pytest.fixture
def processor(parts: dict[str, object], registry: HandlerRegistry) -> TaskProcessor:
    return TaskProcessor(registry=registry, **parts)  # type: ignore[arg-type]


@pytest.fixture
def sweeper(parts: dict[str, object]) -> Sweeper:
    return Sweeper(**parts)  # type: ignore[arg-type]


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
    clock.advance(10.05)  # due after 0.05 s, claimed 10 s later
    await asyncio.sleep(0.06)  # the memory queue holds it back in real time
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
    clock.advance(1)
    await asyncio.sleep(0.02)  # the retry's delay, in real time for the memory queue
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


async def test_the_worker_reports_its_tasks_in_flight(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    repository: MemoryRepository,
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
        await eventually(lambda: all(repository.tasks[i].is_final for i in ids) and not telemetry.in_flight)

    await run_until(worker, three_running_then_done)
    assert (telemetry.in_flight_peak, telemetry.in_flight) == (3, 0)


async def test_sweeper_recoveries_are_counted(
    service: TaskService,
    sweeper: Sweeper,
    repository: MemoryRepository,
    clock: ManualClock,
    config: CoreConfig,
    telemetry: MemoryTelemetry,
) -> None:
    lapsing = await service.submit("reverse", "a")
    await repository.claim(lapsing.id, clock.now(), config.lease)  # a worker that then dies
    dying = await service.submit("reverse", "b")
    for _ in range(dying.max_attempts - 1):
        await repository.claim(dying.id, clock.now(), config.lease)
        clock.advance(config.lease_s + 1)
        await sweeper.sweep_once()
    await repository.claim(dying.id, clock.now(), config.lease)  # its last attempt
    clock.advance(config.lease_s + 1)
    await sweeper.sweep_once()
    assert telemetry.recovered["released"] == 1 + (dying.max_attempts - 1)  # a once, b until its last
    assert telemetry.recovered["failed"] == 1
    assert telemetry.settled == {("reverse", "failed"): 1}

    repository.dispatched_at.clear()  # as if no publish had been confirmed
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
