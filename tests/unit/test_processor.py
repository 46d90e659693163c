"""One delivery end to end: claim, run, verdict, ack - and every way it can go wrong."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest

from taskcore import HandlerRegistry, Outcome, TaskProcessor, TaskService, TaskStatus
from taskcore.adapters.memory import MemoryCache, MemoryQueue, MemoryRepository
from taskcore.adapters.memory.queue import MemoryDelivery
from taskcore.messages import encode_task_message

from .conftest import ManualClock


async def deliver(queue: MemoryQueue, processor: TaskProcessor) -> tuple[Outcome, MemoryDelivery]:
    async with queue.consume(prefetch=1) as consumer:
        delivery = await consumer.next()
        outcome = await processor.process(delivery)
        assert delivery.settled
        return outcome, delivery


async def test_completes_and_caches_with_the_final_ttl(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, cache: MemoryCache
) -> None:
    task = await service.submit("reverse", "hello")
    outcome, _ = await deliver(queue, processor)
    assert outcome is Outcome.COMPLETED
    done = await service.get(task.id)
    assert (done.status, done.result, done.attempts, done.version) == (TaskStatus.COMPLETED, "olleh", 1, 3)
    assert cache.entries[task.id][0].status is TaskStatus.COMPLETED
    assert queue.acked == 1


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
    repository: MemoryRepository,
    clock: ManualClock,
) -> None:
    @registry.handler(max_attempts=2)
    async def boom(_: str) -> None:
        raise RuntimeError("nope")

    task = await service.submit("boom", "a")
    assert (await deliver(queue, processor))[0] is Outcome.RETRY_SCHEDULED
    retry = repository.tasks[task.id]
    assert retry.status is TaskStatus.PENDING
    assert retry.error == "RuntimeError: nope"
    assert timedelta(0) < retry.run_at - clock.now() <= timedelta(seconds=0.01)
    clock.advance(1)
    # the retry message arrives after its delay
    assert (await deliver(queue, processor))[0] is Outcome.FAILED
    failed = repository.tasks[task.id]
    assert (failed.status, failed.attempts) == (TaskStatus.FAILED, 2)


async def test_flaky_handler_completes_on_the_third_attempt(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    repository: MemoryRepository,
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
    done = repository.tasks[task.id]
    assert (done.status, done.result, done.attempts) == (TaskStatus.COMPLETED, "ok", 3)


async def test_a_timeout_fails_the_attempt(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, registry: HandlerRegistry
) -> None:
    @registry.handler(timeout_s=0.05, max_attempts=1)
    async def slow(_: str) -> None:
        await asyncio.sleep(5)

    task = await service.submit("slow", "a")
    assert (await deliver(queue, processor))[0] is Outcome.FAILED
    assert (await service.get(task.id)).error == "timed out after 0.05 s"


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
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, repository: MemoryRepository
) -> None:
    task = await service.submit("reverse", "a")
    cancelled = task.cancel(task.created_at)
    assert await repository.save(cancelled)
    assert (await deliver(queue, processor))[0] is Outcome.SKIPPED
    assert repository.tasks[task.id].status is TaskStatus.CANCELLED


async def test_a_late_result_does_not_overwrite_a_newer_state(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    repository: MemoryRepository,
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
    current = repository.tasks[task.id]
    assert await repository.save(current.cancel(clock.now()))
    release.set()
    outcome, _ = await running
    assert outcome is Outcome.SUPERSEDED
    assert repository.tasks[task.id].status is TaskStatus.CANCELLED
    assert repository.tasks[task.id].result is None


async def test_ack_only_after_the_verdict_is_stored(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    repository: MemoryRepository,
) -> None:
    @registry.handler
    async def db_dies(x: str) -> str:
        repository.available = False
        return x

    await service.submit("db_dies", "a")
    outcome, _ = await deliver(queue, processor)
    assert outcome is Outcome.HANDED_BACK
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
