"""The wake-up census end to end: the sweeper on the memory adapters
(``tests.core.build_core``) finds PENDING tasks whose confirmed messages the
queue lost, and publishes them again.

Time is the core's ``ManualClock``, moved by hand: no test waits on a real
clock. The windows are the configuration's defaults: confirmations settle
after ``redispatch_grace_s`` (10 s), a deficit must last
``lost_wake_up_grace_s`` (15 s), the sweeper runs every ``sweep_interval_s``
(5 s) and counts the reports of the workers seen in the last
``HELD_REPORTS_S`` (15 s).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from taskcore import HandlerRegistry, Outcome, TaskStatus, Worker
from taskcore.model.task import NewTask, Task
from taskcore.work.presence import WorkerPresence
from taskcore.work.sweeper import BATCH, HELD_REPORTS_S
from tests.core import Core, ManualClock, build_core


def counting_registry(calls: Counter[str]) -> HandlerRegistry:
    """``reverse``, counting how often each input ran."""
    registry = HandlerRegistry()

    @registry.handler
    async def reverse(text: str) -> str:
        calls[text] += 1
        return text[::-1]

    return registry


def counting_core(calls: Counter[str]) -> Core:
    return build_core(clock=ManualClock(), registry=counting_registry(calls))


def advance(core: Core, seconds: float) -> None:
    clock = core.clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds)


async def submitted(core: Core, count: int, *, priority: Callable[[int], int] = lambda n: 5) -> list[Task]:
    """``count`` tasks submitted now, their messages confirmed and recorded."""
    tasks = [await core.service.submit("reverse", f"t{n}", priority=priority(n)) for n in range(count)]
    await core.dispatcher.flush()
    assert all(task.id in core.db.dispatched_at for task in tasks)
    return tasks


async def lose_every_message(core: Core, count: int) -> None:
    """The confirmations settle, then the broker loses the queue's messages."""
    advance(core, core.config.redispatch_grace_s + 1)
    assert not await core.sweeper.sweep_once()  # all there: nothing to do
    assert core.queue.purge() == count
    assert core.queue.depth == 0


async def settle(check: Callable[[], bool], turns: int = 200_000) -> None:
    """Let the event loop turn until ``check()`` holds (no clock involved)."""
    for _ in range(turns):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def run_every_task(core: Core, tasks: list[Task]) -> Worker:
    """A worker consumes until every task completed and the queue is empty."""
    worker = Worker(processor=core.processor, queue=core.queue, concurrency=8, grace_s=5)
    running = asyncio.create_task(worker.run())

    def finished() -> bool:
        done = all(core.db.tasks[task.id].status is TaskStatus.COMPLETED for task in tasks)
        return done and core.queue.depth == 0 and worker.in_flight == 0

    try:
        await settle(finished)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    return worker


async def test_lost_messages_are_woken_after_the_grace_and_each_task_then_runs_once() -> None:
    calls: Counter[str] = Counter()
    core = counting_core(calls)
    config = core.config
    tasks = await submitted(core, 300)
    await lose_every_message(core, 300)

    report = await core.sweeper.sweep_once()
    assert report.woken == 0  # the deficit is remembered, not acted on: it may be messages on their way
    advance(core, config.lost_wake_up_grace_s - 1)
    assert (await core.sweeper.sweep_once()).woken == 0
    assert core.queue.depth == 0
    advance(core, 1)
    report = await core.sweeper.sweep_once()
    assert (report.woken, report.redispatched, report.released) == (300, 0, 0)
    assert core.queue.depth == 300
    assert core.queue.published == 600
    assert core.telemetry.recovered == Counter({"redispatched": 300})
    sent_again = [core.db.dispatched_at[task.id] - core.clock.now() for task in tasks]
    assert all(
        timedelta(0) <= at < timedelta(seconds=1) for at in sent_again
    )  # now (a message a microsecond)
    assert not await core.sweeper.sweep_once()  # at once again: nothing missing

    worker = await run_every_task(core, tasks)
    assert worker.outcomes[Outcome.COMPLETED] == 300
    assert calls == Counter({f"t{n}": 1 for n in range(300)})  # each exactly once
    assert core.queue.acked == 300
    for _ in range(6):  # well past every grace: nothing pending, nothing to wake
        advance(core, config.sweep_interval_s * 2)
        assert not await core.sweeper.sweep_once()
    assert core.queue.published == 600
    await core.aclose()


async def test_a_healthy_backlog_of_100_000_is_never_published_again() -> None:
    core = build_core(clock=ManualClock())
    config = core.config
    now = core.clock.now()
    for n in range(100_000):  # the rows and their messages, without the submit path's cache writes
        new = NewTask(
            type="reverse", input=f"t{n}", max_attempts=3, run_at=now, created_at=now, priority=n % 10
        )
        assert await core.dispatcher.dispatch(await core.tasks.add(new))
    await core.dispatcher.flush()
    assert len(core.db.dispatched_at) == 100_000
    assert core.queue.depth == 100_000

    for _ in range(8):  # 40 s: past the redispatch grace and the lost wake-up grace together
        advance(core, config.sweep_interval_s)
        report = await core.sweeper.sweep_once()
        assert not report, report
    assert core.queue.published == 100_000
    assert core.queue.depth == 100_000
    assert core.telemetry.recovered == Counter()

    # The same census, on the same backlog, sees the few that do go missing.
    async with core.queue.consume(prefetch=7) as consumer:
        for _ in range(7):
            await (await consumer.next()).ack()  # taken off the queue, their tasks left PENDING
    assert (await core.sweeper.sweep_once()).woken == 0
    advance(core, config.lost_wake_up_grace_s)
    assert (await core.sweeper.sweep_once()).woken == 7
    assert core.queue.published == 100_007
    assert core.queue.depth == 100_000
    await core.aclose()


async def test_messages_a_worker_holds_are_not_taken_for_lost() -> None:
    """A consumer's unsettled deliveries (RabbitMQ: prefetched into its buffer)
    are neither ready nor gone: the worker's presence reports them as ``held``."""
    calls: Counter[str] = Counter()
    core = counting_core(calls)
    config = core.config
    tasks = await submitted(core, 10)
    advance(core, config.redispatch_grace_s + 1)
    presence = WorkerPresence(roster=core.roster, clock=core.clock, worker="w1")
    async with core.queue.consume(prefetch=4) as consumer:
        for _ in range(4):
            await consumer.next()
        assert (consumer.held, core.queue.depth) == (4, 6)
        assert all(core.db.tasks[task.id].status is TaskStatus.PENDING for task in tasks)
        for _ in range(8):  # 40 s, reporting as often as a worker does
            await presence.report(in_flight=0, processed=0, held=consumer.held)
            assert not await core.sweeper.sweep_once()
            advance(core, config.sweep_interval_s)
        assert core.queue.published == 10

        # Its reports stop (a worker that is gone): once the last one is older
        # than HELD_REPORTS_S its messages count as missing, and after the
        # grace they are published again. A duplicate of each, and harmless.
        woken: list[int] = []
        elapsed = float(config.sweep_interval_s)  # since the last report
        while not woken or not woken[-1]:
            woken.append((await core.sweeper.sweep_once()).woken)
            assert len(woken) < 20
            advance(core, config.sweep_interval_s)
            elapsed += config.sweep_interval_s
        assert woken[-1] == 4
        assert elapsed - config.sweep_interval_s > HELD_REPORTS_S + config.lost_wake_up_grace_s
        assert core.queue.published == 14
    assert core.queue.depth == 14  # the held four came back with the consumer

    await run_every_task(core, tasks)
    assert calls == Counter({f"t{n}": 1 for n in range(10)})
    await core.aclose()


def woken_now(core: Core, tasks: list[Task]) -> list[Task]:
    """The tasks whose messages went out at this instant (the census stamps them
    now; their confirmations, a message a microsecond, follow it)."""
    now = core.clock.now()
    return [task for task in tasks if now <= core.db.dispatched_at[task.id] < now + timedelta(seconds=1)]


async def test_more_than_a_batch_missing_is_woken_a_batch_at_most_highest_priority_first() -> None:
    core = build_core(clock=ManualClock())
    config = core.config
    tasks = await submitted(core, 1200, priority=lambda n: n % 10)  # 120 of each priority
    await lose_every_message(core, 1200)
    assert (await core.sweeper.sweep_once()).woken == 0
    advance(core, config.lost_wake_up_grace_s)

    report = await core.sweeper.sweep_once()
    assert report.woken == BATCH
    first = woken_now(core, tasks)
    assert Counter(task.priority for task in first) == Counter({9: 120, 8: 120, 7: 120, 6: 120, 5: 20})
    assert core.queue.depth == BATCH
    for _ in range(12):  # a minute more at the sweeper's pace: never more than a batch at once
        advance(core, config.sweep_interval_s)
        assert (await core.sweeper.sweep_once()).woken <= BATCH
    await core.aclose()


async def test_every_missing_task_is_woken_once_a_batch_a_sweep_highest_priority_first() -> None:
    """Sweeps spaced past the redispatch grace, so the woken ones' confirmations
    have settled by the next census."""
    core = build_core(clock=ManualClock())
    config = core.config
    tasks = await submitted(core, 1200, priority=lambda n: n % 10)  # 120 of each priority
    await lose_every_message(core, 1200)
    assert (await core.sweeper.sweep_once()).woken == 0
    advance(core, config.lost_wake_up_grace_s)

    batches: list[Counter[int]] = []
    for _ in range(4):
        report = await core.sweeper.sweep_once()
        woken = woken_now(core, tasks)
        assert report.woken == len(woken)
        batches.append(Counter(task.priority for task in woken))
        advance(core, config.redispatch_grace_s + 1)
    assert [sum(batch.values()) for batch in batches] == [BATCH, BATCH, 200, 0]
    assert batches[0] == Counter({9: 120, 8: 120, 7: 120, 6: 120, 5: 20})
    assert batches[1] == Counter({5: 100, 4: 120, 3: 120, 2: 120, 1: 40})
    assert batches[2] == Counter({1: 80, 0: 120})
    assert core.queue.published == 2400  # each once more, no duplicates
    await core.aclose()


async def test_at_the_sweep_interval_the_batches_follow_each_other() -> None:
    core = build_core(clock=ManualClock())
    config = core.config
    await submitted(core, 1200)
    await lose_every_message(core, 1200)
    woken: list[int] = []
    for _ in range(6):  # at 0, 5, 10 s the deficit lasts; at 15 s it is acted on
        woken.append((await core.sweeper.sweep_once()).woken)
        advance(core, config.sweep_interval_s)
    assert woken == [0, 0, 0, BATCH, BATCH, 200]
    await core.aclose()
