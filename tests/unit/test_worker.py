"""The consume loop: bounded concurrency, redelivery, draining on stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from taskcore import (
    CoreConfig,
    Dispatcher,
    HandlerRegistry,
    Outcome,
    TaskProcessor,
    TaskService,
    TaskStatus,
    Worker,
)
from taskcore.adapters.memory import MemoryCache, MemoryQueue, MemoryRepository

from .conftest import ManualClock


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def make_worker(processor: TaskProcessor, queue: MemoryQueue, concurrency: int, grace_s: float = 5) -> Worker:
    return Worker(processor=processor, queue=queue, concurrency=concurrency, grace_s=grace_s)


async def run_until(worker: Worker, done: Callable[[], bool] | Callable[[], Awaitable[None]]) -> None:
    running = asyncio.create_task(worker.run())
    try:
        result = done()
        if asyncio.iscoroutine(result):
            await result
        else:
            await eventually(done)  # type: ignore[arg-type]
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)


async def test_runs_up_to_concurrency_tasks_at_once(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    repository: MemoryRepository,
) -> None:
    active = peak = 0

    @registry.handler
    async def nap(_: int) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1

    for i in range(20):
        await service.submit("nap", i)
    worker = make_worker(processor, queue, concurrency=4)
    started = time.monotonic()
    await run_until(worker, lambda: worker.outcomes[Outcome.COMPLETED] == 20)
    assert peak == 4
    assert all(t.status is TaskStatus.COMPLETED for t in repository.tasks.values())
    # 20 tasks of 50 ms, four at a time: about 5 rounds, far from 20 in a row
    assert time.monotonic() - started < 20 * 0.05


async def test_sync_handlers_run_concurrently_in_the_pool(
    repository: MemoryRepository,
    queue: MemoryQueue,
    dispatcher: Dispatcher,
    cache: MemoryCache,
    clock: ManualClock,
    config: CoreConfig,
) -> None:
    registry = HandlerRegistry()
    barrier_hits: list[int] = []

    @registry.handler
    def block(i: int) -> int:
        time.sleep(0.1)
        barrier_hits.append(i)
        return i

    with ThreadPoolExecutor(max_workers=8) as pool:
        processor = TaskProcessor(
            repository=repository,
            dispatcher=dispatcher,
            cache=cache,
            clock=clock,
            registry=registry,
            config=config,
            executor=pool,
        )
        service = TaskService(
            repository=repository,
            dispatcher=dispatcher,
            cache=cache,
            clock=clock,
            registry=registry,
            config=config,
        )
        for i in range(8):
            await service.submit("block", i)
        worker = make_worker(processor, queue, concurrency=8)
        started = time.monotonic()
        await run_until(worker, lambda: len(barrier_hits) == 8 and worker.in_flight == 0)
        elapsed = time.monotonic() - started
    assert sorted(barrier_hits) == list(range(8))
    assert elapsed < 8 * 0.1  # they overlapped


async def test_the_loop_stays_responsive_while_sync_handlers_block(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, registry: HandlerRegistry
) -> None:
    @registry.handler
    def hog(_: None) -> None:
        time.sleep(0.3)

    await service.submit("hog", None)
    worker = make_worker(processor, queue, concurrency=2)

    async def probe() -> None:
        await eventually(lambda: worker.in_flight == 1)
        before = time.monotonic()
        await asyncio.sleep(0.01)
        assert time.monotonic() - before < 0.2
        await eventually(lambda: worker.in_flight == 0)

    await run_until(worker, probe)


async def test_unacked_messages_are_redelivered_to_the_next_worker(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue
) -> None:
    task = await service.submit("reverse", "abc")
    async with queue.consume(prefetch=1) as consumer:
        taken = await consumer.next()
        assert taken.body == str(task.id).encode()
        # this consumer dies without settling the message
    assert queue.depth == 1
    worker = make_worker(processor, queue, concurrency=1)
    await run_until(worker, lambda: worker.outcomes[Outcome.COMPLETED] == 1)
    assert (await service.get(task.id)).result == "cba"


async def test_stop_lets_running_tasks_finish(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, registry: HandlerRegistry
) -> None:
    @registry.handler
    async def short(_: None) -> str:
        await asyncio.sleep(0.1)
        return "done"

    task = await service.submit("short", None)
    worker = make_worker(processor, queue, concurrency=2, grace_s=5)
    running = asyncio.create_task(worker.run())
    await eventually(lambda: worker.in_flight == 1)
    worker.stop()
    await asyncio.wait_for(running, 5)
    assert (await service.get(task.id)).status is TaskStatus.COMPLETED
    assert queue.acked == 1


async def test_stop_hands_back_what_outlives_the_grace_period(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    repository: MemoryRepository,
) -> None:
    @registry.handler
    async def endless(_: None) -> None:
        await asyncio.sleep(60)

    task = await service.submit("endless", None)
    worker = make_worker(processor, queue, concurrency=2, grace_s=0.05)
    running = asyncio.create_task(worker.run())
    await eventually(lambda: worker.in_flight == 1)
    worker.stop()
    await asyncio.wait_for(running, 5)
    handed_back = repository.tasks[task.id]
    assert handed_back.status is TaskStatus.PENDING
    assert handed_back.attempts == 0  # the shutdown is not the handler's failure
    assert queue.depth == 1  # the message waits for the next worker
    assert queue.acked == 0


async def test_an_idle_worker_stops_at_once(processor: TaskProcessor, queue: MemoryQueue) -> None:
    worker = make_worker(processor, queue, concurrency=3)
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(running, 1)


async def test_two_workers_share_the_queue(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, registry: HandlerRegistry
) -> None:
    @registry.handler
    async def nap(_: int) -> None:
        await asyncio.sleep(0.01)

    for i in range(20):
        await service.submit("nap", i)
    first = make_worker(processor, queue, concurrency=2)
    second = make_worker(processor, queue, concurrency=2)
    runs = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]

    def total() -> int:
        return first.outcomes[Outcome.COMPLETED] + second.outcomes[Outcome.COMPLETED]

    await eventually(lambda: total() == 20)
    first.stop()
    second.stop()
    await asyncio.gather(*runs)
    assert first.outcomes[Outcome.COMPLETED] > 0
    assert second.outcomes[Outcome.COMPLETED] > 0


async def test_stop_starts_the_grace_period_at_once_when_every_slot_is_busy(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    repository: MemoryRepository,
) -> None:
    @registry.handler
    async def endless(_: None) -> None:
        await asyncio.sleep(60)

    for _ in range(3):
        await service.submit("endless", None)
    worker = make_worker(processor, queue, concurrency=2, grace_s=0.1)
    running = asyncio.create_task(worker.run())
    await eventually(lambda: worker.in_flight == 2)
    started = time.monotonic()
    worker.stop()
    await asyncio.wait_for(running, 5)
    assert time.monotonic() - started < 2  # not the 60 s of the running tasks
    assert all(t.status is TaskStatus.PENDING for t in repository.tasks.values())
    assert queue.depth == 3  # the third was never taken; the two running were handed back
