"""The consume loop: bounded concurrency, redelivery, draining on stop.

Every test runs on fake loop time (``looptime``) with the core on the loop's
clock (``LoopClock``): handler naps, grace periods and heartbeats take no real
time, and the durations asserted are exact, whatever the machine's speed.
Handlers that block a thread wait on events the test sets, never on a nap.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from taskcore import CoreConfig, HandlerRegistry, Outcome, TaskProcessor, TaskService, TaskStatus, Worker
from taskcore.adapters.memory import MemoryDatabase, MemoryQueue
from taskcore.model.messages import encode_task_message, encode_wake_ups
from tests.core import Core, LoopClock, build_core

pytestmark = pytest.mark.looptime


@pytest.fixture
def core(registry: HandlerRegistry, config: CoreConfig) -> Core:
    """The conftest's core, on the event loop's (fake) clock."""
    return build_core(clock=LoopClock(), registry=registry, config=config)


def now() -> float:
    return asyncio.get_running_loop().time()


async def eventually(check: Callable[[], bool], within: float = 30.0) -> None:
    """Poll ``check`` on loop time (fake, but in step with the real one while a
    handler's thread runs)."""
    deadline = now() + within
    while not check():
        assert now() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


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
        await asyncio.wait_for(running, 30)


async def test_runs_up_to_concurrency_tasks_at_once(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
) -> None:
    active = peak = 0
    starts: list[float] = []

    @registry.handler
    async def nap(_: int) -> None:
        nonlocal active, peak
        starts.append(now())
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1

    for i in range(20):
        await service.submit("nap", i)
    worker = make_worker(processor, queue, concurrency=4)
    await run_until(worker, lambda: worker.outcomes[Outcome.COMPLETED] == 20)
    assert peak == 4
    assert all(t.status is TaskStatus.COMPLETED for t in db.tasks.values())
    # 20 tasks of 50 ms, four at a time: five rounds of four, each starting as the last ends
    rounds = Counter(round(start - starts[0], 3) for start in starts)
    assert rounds == {0.0: 4, 0.05: 4, 0.1: 4, 0.15: 4, 0.2: 4}


async def test_sync_handlers_run_concurrently_in_the_pool(
    registry: HandlerRegistry, config: CoreConfig
) -> None:
    # Eight handlers meet at a barrier: none gets past it unless all eight run at once.
    barrier = threading.Barrier(8)

    @registry.handler(max_attempts=1)
    def meet(i: int) -> int:
        barrier.wait(timeout=30)
        return i

    with ThreadPoolExecutor(max_workers=8) as pool:
        core = build_core(clock=LoopClock(), registry=registry, config=config, executor=pool)
        for i in range(8):
            await core.service.submit("meet", i)
        worker = make_worker(core.processor, core.queue, concurrency=8)
        await run_until(worker, lambda: sum(worker.outcomes.values()) == 8)
    assert worker.outcomes[Outcome.COMPLETED] == 8
    assert sorted(t.result for t in core.db.tasks.values()) == list(range(8))


async def test_the_loop_stays_responsive_while_sync_handlers_block(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
) -> None:
    entered = threading.Event()
    released = threading.Event()

    @registry.handler(max_attempts=1)
    def hog(_: None) -> bool:
        entered.set()
        # Only the event loop sets this: were the handler blocking the loop, it would wait in vain.
        return released.wait(timeout=30)

    task = await service.submit("hog", None)
    worker = make_worker(processor, queue, concurrency=2)

    async def probe() -> None:
        await eventually(entered.is_set)
        await asyncio.sleep(0.01)  # the loop turns while the handler holds its thread
        released.set()
        await eventually(lambda: worker.outcomes[Outcome.COMPLETED] == 1)

    await run_until(worker, probe)
    assert db.tasks[task.id].result is True


async def test_unacked_messages_are_redelivered_to_the_next_worker(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, db: MemoryDatabase
) -> None:
    task = await service.submit("reverse", "abc")
    async with queue.consume(prefetch=1) as consumer:
        taken = await consumer.next()
        assert taken.body == str(task.id).encode()
        # this consumer dies without settling the message
    assert queue.depth == 1
    worker = make_worker(processor, queue, concurrency=1)
    await run_until(worker, lambda: worker.outcomes[Outcome.COMPLETED] == 1)
    done = db.tasks[task.id]
    assert (done.status, done.result, done.attempts) == (TaskStatus.COMPLETED, "cba", 1)
    assert queue.acked == 1


async def test_stop_lets_running_tasks_finish(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
) -> None:
    started = asyncio.Event()

    @registry.handler
    async def short(_: None) -> str:
        started.set()
        await asyncio.sleep(0.1)
        return "done"

    task = await service.submit("short", None)
    worker = make_worker(processor, queue, concurrency=2, grace_s=5)
    running = asyncio.create_task(worker.run())
    await started.wait()
    stopped_at = now()
    worker.stop()
    await asyncio.wait_for(running, 30)
    assert now() - stopped_at == pytest.approx(0.1)  # the drain waited for the handler, no longer
    assert (db.tasks[task.id].status, db.tasks[task.id].result) == (TaskStatus.COMPLETED, "done")
    assert queue.acked == 1


async def test_stop_unclaims_what_outlives_the_grace_period(
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
        await asyncio.sleep(60)

    task = await service.submit("endless", None)
    worker = make_worker(processor, queue, concurrency=2, grace_s=0.05)
    running = asyncio.create_task(worker.run())
    await started.wait()
    stopped_at = now()
    worker.stop()
    await asyncio.wait_for(running, 30)
    assert now() - stopped_at == pytest.approx(0.05)  # the grace period, not the handler's 60 s
    unclaimed = db.tasks[task.id]
    assert unclaimed.status is TaskStatus.PENDING
    assert unclaimed.attempts == 0  # the shutdown is not the handler's failure
    assert queue.depth == 1  # the message waits for the next worker
    assert queue.published == 1  # and it is the task's wake-up: no second one
    assert queue.acked == 0


async def test_an_idle_worker_stops_at_once(processor: TaskProcessor, queue: MemoryQueue) -> None:
    worker = make_worker(processor, queue, concurrency=3)
    running = asyncio.create_task(worker.run())
    await eventually(lambda: worker.liveness().consuming)
    stopped_at = now()
    worker.stop()
    await asyncio.wait_for(running, 30)
    assert now() - stopped_at == pytest.approx(0, abs=1e-3)
    assert worker.liveness().consuming is False


async def test_two_workers_share_the_queue(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
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
    assert all(t.status is TaskStatus.COMPLETED and t.attempts == 1 for t in db.tasks.values())


async def test_stop_starts_the_grace_period_at_once_when_every_slot_is_busy(
    service: TaskService,
    processor: TaskProcessor,
    queue: MemoryQueue,
    registry: HandlerRegistry,
    db: MemoryDatabase,
) -> None:
    @registry.handler
    async def endless(_: None) -> None:
        await asyncio.sleep(60)

    for _ in range(3):
        await service.submit("endless", None)
    worker = make_worker(processor, queue, concurrency=2, grace_s=0.1)
    running = asyncio.create_task(worker.run())
    await eventually(lambda: worker.in_flight == 2)
    stopped_at = now()
    worker.stop()
    await asyncio.wait_for(running, 30)
    assert now() - stopped_at == pytest.approx(0.1)  # the grace period, not the 60 s of the running tasks
    assert all(t.status is TaskStatus.PENDING and t.attempts == 0 for t in db.tasks.values())
    assert queue.depth == 3  # the third was never taken; the two running were unclaimed
    assert queue.published == 3


async def suspect_task(core: Core, input_data: object) -> int:
    """A task whose worker died while it ran beside others: PENDING and
    suspect. Its wake-ups are taken off the queue: the test publishes one."""
    task = await core.service.submit("nap", input_data)
    await core.tasks.claim(task.id, core.clock.now(), core.config.lease)  # beside others, then it died
    await asyncio.sleep(core.config.lease_s + 1)
    assert (await core.sweeper.sweep_once()).released == 1
    assert core.db.tasks[task.id].suspect
    core.queue.purge()
    return task.id


async def test_a_suspect_task_runs_alone_and_nothing_starts_beside_it(
    core: Core, registry: HandlerRegistry
) -> None:
    spans: dict[str, tuple[float, float]] = {}

    @registry.handler
    async def nap(key: str) -> None:
        started = now()
        await asyncio.sleep(0.1)
        spans[key] = (started, now())

    suspect = await suspect_task(core, "suspect")
    # Two tasks are running when its wake-up comes, and two more wait behind it.
    for key in ("a", "b"):
        await core.service.submit("nap", key)
    await core.queue.publish(encode_task_message(suspect, alone=True))
    for key in ("c", "d"):
        await core.service.submit("nap", key)
    worker = make_worker(core.processor, core.queue, concurrency=4)
    await run_until(worker, lambda: worker.outcomes[Outcome.COMPLETED] == 5)
    alone_from, alone_to = spans["suspect"]
    for key in ("a", "b", "c", "d"):
        start, end = spans[key]
        assert end <= alone_from or start >= alone_to, f"{key} ran beside the suspect task: {spans}"
    assert spans["a"] == spans["b"]  # the two before it ran together,
    assert spans["a"][1] == alone_from  # and it started as soon as they ended
    assert spans["c"][0] == spans["d"][0] == alone_to  # and the two after it as soon as it ended
    done = core.db.tasks[suspect]
    assert (done.status, done.attempts, done.alone, done.suspect) == (TaskStatus.COMPLETED, 1, True, False)


async def test_a_wake_up_without_the_flag_does_not_start_a_suspect_task_beside_others(
    core: Core, registry: HandlerRegistry
) -> None:
    """An older wake-up of the task (the dead worker's redelivered one) is dropped;
    the task waits for its own, which runs it alone."""

    @registry.handler
    async def nap(key: str) -> str:
        return key

    suspect = await suspect_task(core, "suspect")
    await core.queue.publish(encode_task_message(suspect))
    worker = make_worker(core.processor, core.queue, concurrency=4)
    await run_until(worker, lambda: worker.outcomes[Outcome.SKIPPED] == 1)
    assert core.db.tasks[suspect].status is TaskStatus.PENDING
    await core.queue.publish(encode_task_message(suspect, alone=True))
    worker = make_worker(core.processor, core.queue, concurrency=4)
    await run_until(worker, lambda: worker.outcomes[Outcome.COMPLETED] == 1)
    assert core.db.tasks[suspect].attempts == 1


async def test_stop_while_a_suspect_task_waits_for_the_others_hands_it_back(
    core: Core, registry: HandlerRegistry
) -> None:
    started = asyncio.Event()

    @registry.handler
    async def nap(key: str) -> None:
        started.set()
        await asyncio.sleep(10)

    suspect = await suspect_task(core, "suspect")
    await core.service.submit("nap", "long")
    await core.queue.publish(encode_task_message(suspect, alone=True))
    worker = Worker(processor=core.processor, queue=core.queue, concurrency=4, grace_s=1)
    running = asyncio.create_task(worker.run())
    await started.wait()
    await eventually(lambda: core.queue.depth == 0)  # the suspect's wake-up is taken, and waits
    stopped_at = now()
    worker.stop()
    await asyncio.wait_for(running, 30)
    assert now() - stopped_at == pytest.approx(1, abs=0.01)  # the grace period, not the long nap
    assert core.db.tasks[suspect].status is TaskStatus.PENDING
    assert core.queue.depth == 2  # its wake-up handed back, and the long task's after the unclaim


async def test_a_message_waking_several_tasks_runs_each_and_dead_letters_an_unknown_id_alone(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, db: MemoryDatabase
) -> None:
    tasks = [await service.submit("reverse", f"t{n}") for n in range(3)]
    queue.purge()  # the submits' own wake-ups: this test sends one message for all
    await queue.publish(encode_wake_ups([tasks[0].id, 999_999, tasks[1].id, tasks[2].id]))
    worker = make_worker(processor, queue, concurrency=2)
    await run_until(worker, lambda: all(db.tasks[t.id].status is TaskStatus.COMPLETED for t in tasks))
    assert [db.tasks[t.id].result for t in tasks] == ["0t", "1t", "2t"]
    assert queue.dead_letters == [(b"999999", "no task with id 999999")]
    assert queue.acked == 1  # the message, once all four parts were settled
    assert worker.outcomes[Outcome.COMPLETED] == 3
    assert worker.outcomes[Outcome.DEAD_LETTERED] == 1
