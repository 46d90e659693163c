"""One delivery end to end: claim, run, verdict, ack - and every way it can go wrong."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest

from taskcore import HandlerRegistry, Outcome, TaskProcessor, TaskService, TaskStatus
from taskcore.adapters.memory import MemoryCache, MemoryDatabase, MemoryQueue, MemoryTasks
from taskcore.adapters.memory.queue import MemoryDelivery
from taskcore.model.changes import TaskChange
from taskcore.model.messages import encode_task_message
from taskcore.model.task import Task
from tests.core import LoopClock, ManualClock, build_core, quick_config


async def deliver(queue: MemoryQueue, processor: TaskProcessor) -> tuple[Outcome, MemoryDelivery]:
    async with queue.consume(prefetch=1) as consumer:
        delivery = await consumer.next()
        outcome = await processor.process(delivery)
        assert delivery.settled
        return outcome, delivery


async def test_completes_caches_and_announces_each_step(clock: ManualClock) -> None:
    core = build_core(clock=clock, cache=MemoryCache(monotonic=lambda: 1000.0))
    task = await core.service.submit("reverse", "hello")
    outcome, _ = await deliver(core.queue, core.processor)
    assert outcome is Outcome.COMPLETED
    done = core.db.tasks[task.id]
    assert (done.status, done.result, done.attempts, done.version) == (TaskStatus.COMPLETED, "olleh", 1, 3)
    assert core.cache.entries[task.id][0] == done
    assert core.cache.ttl(task.id) == core.config.finished_ttl_s
    assert core.queue.acked == 1
    assert core.queue.published == 1  # a verdict publishes nothing
    await core.aclose()
    assert core.changes.announced == [
        TaskChange(task.id, 2, TaskStatus.PROCESSING),
        TaskChange(task.id, 3, TaskStatus.COMPLETED),
    ]


async def test_sync_handlers_run_in_a_thread(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, registry: HandlerRegistry
) -> None:
    loop_thread = threading.get_ident()

    @registry.handler
    def where(_: None) -> bool:
        return threading.get_ident() != loop_thread

    task = await service.submit("where", None)
    await deliver(queue, processor)
    assert (await service.get(task.id)).result is True


async def test_a_duplicate_delivery_runs_nothing(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, registry: HandlerRegistry
) -> None:
    runs: list[str] = []

    @registry.handler
    async def count(x: str) -> str:
        runs.append(x)
        return x

    task = await service.submit("count", "a")
    await queue.publish(encode_task_message(task.id))  # the same id twice
    assert (await deliver(queue, processor))[0] is Outcome.COMPLETED
    assert (await deliver(queue, processor))[0] is Outcome.SKIPPED
    assert runs == ["a"]
    assert queue.acked == 2


async def test_failures_retry_with_backoff_then_fail(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
    clock: ManualClock,
) -> None:
    @registry.handler(max_attempts=2)
    async def boom(_: str) -> None:
        raise RuntimeError("nope")

    task = await service.submit("boom", "a")
    assert (await deliver(queue, processor))[0] is Outcome.RETRY_SCHEDULED
    retry = db.tasks[task.id]
    assert retry.status is TaskStatus.PENDING
    assert retry.error == "RuntimeError: nope"
    assert timedelta(0) < retry.run_at - clock.now() <= timedelta(seconds=0.01)
    clock.advance(1)
    # the retry message arrives after its delay
    assert (await deliver(queue, processor))[0] is Outcome.FAILED
    failed = db.tasks[task.id]
    assert (failed.status, failed.attempts) == (TaskStatus.FAILED, 2)


async def test_flaky_handler_completes_on_the_third_attempt(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
    clock: ManualClock,
) -> None:
    calls = 0

    @registry.handler
    async def flaky(x: str) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError(f"try {calls}")
        return x

    task = await service.submit("flaky", "ok")
    for _ in range(3):
        await deliver(queue, processor)
        clock.advance(1)
    done = db.tasks[task.id]
    assert (done.status, done.result, done.attempts) == (TaskStatus.COMPLETED, "ok", 3)


@pytest.mark.looptime
async def test_a_timeout_fails_the_attempt(registry: HandlerRegistry) -> None:
    core = build_core(clock=LoopClock(), registry=registry)

    @registry.handler(timeout_s=0.05, max_attempts=1)
    async def slow(_: str) -> None:
        await asyncio.sleep(5)

    task = await core.service.submit("slow", "a")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await deliver(core.queue, core.processor))[0] is Outcome.FAILED
    assert loop.time() - started == pytest.approx(0.05)  # the timeout, not the handler's 5 s
    failed = core.db.tasks[task.id]
    assert (failed.status, failed.error) == (TaskStatus.FAILED, "timed out after 0.05 s")
    assert failed.finished_at == core.clock.now()


async def test_an_unserialisable_result_fails_without_retry(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, registry: HandlerRegistry
) -> None:
    @registry.handler
    async def weird(_: str) -> object:
        return object()

    task = await service.submit("weird", "a")
    assert (await deliver(queue, processor))[0] is Outcome.FAILED
    assert "not serialisable" in ((await service.get(task.id)).error or "")


@pytest.mark.parametrize("body", [b"", b"abc", b"-1", b"1.5", b"9" * 40])
async def test_unparseable_messages_are_dead_lettered(
    processor: TaskProcessor, queue: MemoryQueue, body: bytes
) -> None:
    await queue.publish(body)
    assert (await deliver(queue, processor))[0] is Outcome.DEAD_LETTERED
    assert queue.dead_letters[0][0] == body
    assert "not a task id" in queue.dead_letters[0][1]


async def test_a_message_for_no_task_is_dead_lettered(processor: TaskProcessor, queue: MemoryQueue) -> None:
    await queue.publish(encode_task_message(999))
    assert (await deliver(queue, processor))[0] is Outcome.DEAD_LETTERED
    assert queue.dead_letters == [(b"999", "no task with id 999")]


async def test_a_cancelled_task_is_not_run(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, db: MemoryDatabase, tasks: MemoryTasks
) -> None:
    task = await service.submit("reverse", "a")
    cancelled = task.cancel(task.created_at)
    assert await tasks.save(cancelled)
    assert (await deliver(queue, processor))[0] is Outcome.SKIPPED
    assert db.tasks[task.id].status is TaskStatus.CANCELLED


async def test_a_late_result_does_not_overwrite_a_newer_state(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
    tasks: MemoryTasks,
    clock: ManualClock,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @registry.handler
    async def gated(x: str) -> str:
        started.set()
        await release.wait()
        return x

    task = await service.submit("gated", "a")
    running = asyncio.create_task(deliver(queue, processor))
    await started.wait()
    # Meanwhile the task is cancelled (or a sweeper took it over).
    current = db.tasks[task.id]
    assert await tasks.save(current.cancel(clock.now()))
    release.set()
    outcome, _ = await running
    assert outcome is Outcome.SUPERSEDED
    assert db.tasks[task.id].status is TaskStatus.CANCELLED
    assert db.tasks[task.id].result is None


async def test_ack_only_after_the_verdict_is_stored(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
) -> None:
    @registry.handler
    async def db_dies(x: str) -> str:
        db.available = False
        return x

    await service.submit("db_dies", "a")
    outcome, _ = await deliver(queue, processor)
    assert outcome is Outcome.REQUEUED
    assert queue.acked == 0
    assert queue.depth == 1  # the message is back for another try


async def test_a_result_the_repository_cannot_hold_fails_the_task_for_good(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, registry: HandlerRegistry
) -> None:
    @registry.handler
    async def nul(_: str) -> str:
        return "a\x00b"

    task = await service.submit("nul", "x")
    assert (await deliver(queue, processor))[0] is Outcome.FAILED
    failed = await service.get(task.id)
    assert failed.status is TaskStatus.FAILED
    assert "cannot be stored" in (failed.error or "")
    assert queue.acked == 1


async def test_a_shutdown_mid_run_unclaims_and_gives_the_message_back(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
) -> None:
    started = asyncio.Event()

    @registry.handler
    async def endless(_: None) -> None:
        started.set()
        await asyncio.Event().wait()

    task = await service.submit("endless", None)
    async with queue.consume(prefetch=1) as consumer:
        delivery = await consumer.next()
        running = asyncio.create_task(processor.process(delivery))
        await started.wait()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert delivery.settled
    back = db.tasks[task.id]
    assert (back.status, back.attempts, back.version) == (TaskStatus.PENDING, 0, 3)
    assert back.started_at is None
    assert queue.published == 1  # the message given back is its wake-up: no second one
    assert (queue.depth, queue.acked) == (1, 0)


@pytest.mark.looptime
async def test_the_heartbeat_keeps_the_lease_of_a_long_run(registry: HandlerRegistry) -> None:
    core = build_core(clock=LoopClock(), registry=registry, config=quick_config(lease_s=3, task_timeout_s=60))

    @registry.handler
    async def long(_: None) -> str:
        await asyncio.sleep(10)  # more than three leases
        return "done"

    task = await core.service.submit("long", None)
    running = asyncio.create_task(deliver(core.queue, core.processor))
    await asyncio.sleep(5.5)
    held = core.db.tasks[task.id]
    assert held.status is TaskStatus.PROCESSING
    assert held.lease_until is not None
    assert core.clock.now() < held.lease_until <= core.clock.now() + core.config.lease
    outcome, _ = await running
    assert outcome is Outcome.COMPLETED
    assert core.db.tasks[task.id].result == "done"


@pytest.mark.looptime
async def test_a_task_cancelled_while_running_is_stopped_at_the_next_heartbeat(
    registry: HandlerRegistry,
) -> None:
    core = build_core(clock=LoopClock(), registry=registry, config=quick_config(lease_s=3, task_timeout_s=60))
    started = asyncio.Event()
    stopped = asyncio.Event()

    @registry.handler
    async def endless(_: None) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    task = await core.service.submit("endless", None)
    running = asyncio.create_task(deliver(core.queue, core.processor))
    await started.wait()
    loop = asyncio.get_running_loop()
    cancelled_at = loop.time()
    await core.service.cancel(task.id)
    outcome, _ = await running
    assert outcome is Outcome.SUPERSEDED
    assert stopped.is_set()  # the handler was cancelled, not left running
    assert loop.time() - cancelled_at <= core.config.lease_s / 3  # one heartbeat at most
    final = core.db.tasks[task.id]
    assert (final.status, final.result) == (TaskStatus.CANCELLED, None)
    assert core.queue.acked == 1


class HeldCache(MemoryCache):
    """A cache whose PROCESSING writes wait until released, as a Redis that
    stopped answering holds them until the client's timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()

    async def put(self, task: Task, ttl: timedelta | None) -> None:
        if task.status is TaskStatus.PROCESSING:
            await self.released.wait()
        await super().put(task, ttl)


@pytest.mark.looptime
async def test_the_lease_is_kept_while_the_verdict_waits_for_a_slow_cache(registry: HandlerRegistry) -> None:
    """The handler is done, but the PROCESSING write-through (which the verdict
    waits for, to keep the cache in order) is held longer than the lease: the
    heartbeat goes on, so a sweep meanwhile finds the lease alive and the task
    runs once. (The lease lapsed here, a sweeper released the task and it ran
    again on a loaded machine: tests/integration/faults/test_worker_crashes.py.)"""
    cache = HeldCache()
    core = build_core(
        clock=LoopClock(), registry=registry, cache=cache, config=quick_config(lease_s=3, task_timeout_s=60)
    )
    runs = 0

    @registry.handler
    async def quick(_: None) -> str:
        nonlocal runs
        runs += 1
        return "done"

    task = await core.service.submit("quick", None)
    running = asyncio.create_task(deliver(core.queue, core.processor))
    await asyncio.sleep(2 * core.config.lease_s)  # the handler ended long ago; the write is still held
    assert (await core.sweeper.sweep_once()).released == 0
    cache.released.set()
    outcome, _ = await running
    assert outcome is Outcome.COMPLETED
    assert runs == 1
    done = core.db.tasks[task.id]
    assert (done.status, done.attempts, done.result) == (TaskStatus.COMPLETED, 1, "done")
