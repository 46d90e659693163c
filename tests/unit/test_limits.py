"""Concurrency and rate limits on the memory adapters, on the event loop's fake
time: what the claim lets start, and when the held-back tasks start after.
(The same rules on PostgreSQL: tests/contracts/limits.py, and across worker
processes: tests/integration/e2e/test_limits.py.)"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import msgspec
import pytest

from taskcore import HandlerRegistry, Outcome, TaskStatus, Worker
from taskcore.errors import HandlerRegistrationError, InvalidInput
from taskcore.model.limits import Rate, parse_rate
from tests.core import Core, LoopClock, build_core

pytestmark = pytest.mark.looptime


class Job(msgspec.Struct):
    customer: str
    n: int = 0


def now() -> float:
    return asyncio.get_running_loop().time()


async def until(done: Callable[[], bool]) -> None:
    """Poll on the loop's (fake) time."""
    for _ in range(100_000):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not done in time")


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100/m", Rate(100, timedelta(minutes=1))),
        ("20/s", Rate(20, timedelta(seconds=1))),
        ("5/h", Rate(5, timedelta(hours=1))),
        (" 10 / 30s ", Rate(10, timedelta(seconds=30))),
    ],
)
def test_a_rate_reads_as_starts_per_period(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate
    assert rate.interval == rate.period / rate.count


@pytest.mark.parametrize("text", ["", "100", "0/s", "10/d", "1/0s", "-1/s", "ten/s"])
def test_a_bad_rate_is_refused_at_registration(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_rate(text)
    with pytest.raises(HandlerRegistrationError):
        HandlerRegistry().register(lambda job: None, name="t", rate_limit=text)


def test_limit_settings_are_checked_at_registration() -> None:
    registry = HandlerRegistry()
    for bad in (
        {"concurrency": 0},
        {"concurrency": 1.5},
        {"concurrency_key": str},
        {"rate_key": str},
    ):
        with pytest.raises(HandlerRegistrationError):
            registry.register(lambda job: None, name="t", **bad)  # type: ignore[arg-type]


def test_a_task_stores_the_keys_it_is_limited_under() -> None:
    def job(work: Job) -> None: ...

    registry = HandlerRegistry()
    registry.register(job, name="plain")
    registry.register(job, name="capped", concurrency=2)
    limited = registry.register(
        job,
        name="per_customer",
        concurrency=1,
        concurrency_key=lambda job: job.customer,
        rate_limit="10/s",
        rate_key=lambda job: f"api-{job.customer}",
    )
    limited_input = limited.parse_input({"customer": "acme"})
    assert registry.get("plain").limit_keys("x") == (None, None)
    assert registry.get("capped").limit_keys("x") == ("", None)
    assert limited.limit_keys(limited_input) == ("acme", "api-acme")


def registry_of(**limits: object) -> tuple[HandlerRegistry, list[tuple[str, float, float]]]:
    """A registry with one handler, ``job``, limited as asked, that records
    (customer, start, end) of each run; each run takes 1 s."""
    registry = HandlerRegistry()
    runs: list[tuple[str, float, float]] = []

    async def job(work: Job) -> int:
        started = now()
        await asyncio.sleep(1)
        runs.append((work.customer, started, now()))
        return work.n

    registry.register(job, name="job", **limits)  # type: ignore[arg-type]
    return registry, runs


async def run_all(core: Core, ids: list[int], concurrency: int = 50) -> Worker:
    worker = Worker(processor=core.processor, queue=core.queue, concurrency=concurrency)
    running = asyncio.create_task(worker.run())
    await until(lambda: all(core.db.tasks[i].status is TaskStatus.COMPLETED for i in ids))
    worker.stop()
    await running
    return worker


def most_at_once(runs: list[tuple[str, float, float]]) -> int:
    events = sorted([(start, 1) for _, start, _ in runs] + [(end, -1) for _, _, end in runs])
    running = peak = 0
    for _, change in events:  # an end before a start at the same instant
        running += change
        peak = max(peak, running)
    return peak


async def test_a_concurrency_limit_holds_and_a_freed_slot_starts_the_next_at_once() -> None:
    registry, runs = registry_of(concurrency=2)
    core = build_core(clock=LoopClock(), registry=registry)
    ids = [(await core.service.submit("job", {"customer": "a", "n": n})).id for n in range(6)]
    started = now()
    worker = await run_all(core, ids)
    assert most_at_once(runs) == 2  # fifty slots on the worker, two let through
    # Three rounds of two, each starting as the last ended: parked tasks are woken, not polled.
    assert sorted(round(start - started, 3) for _, start, _ in runs) == [0, 0, 1, 1, 2, 2]
    assert worker.outcomes[Outcome.COMPLETED] == 6
    assert not core.db.throttled


async def test_a_concurrency_key_caps_each_key_on_its_own() -> None:
    registry, runs = registry_of(concurrency=1, concurrency_key=lambda job: job.customer)
    core = build_core(clock=LoopClock(), registry=registry)
    ids = [(await core.service.submit("job", {"customer": c})).id for c in "aabbb"]
    await run_all(core, ids)
    for customer in "ab":
        assert most_at_once([run for run in runs if run[0] == customer]) == 1
    assert most_at_once(runs) == 2  # one of each at a time
    assert max(end for _, _, end in runs) - min(start for _, start, _ in runs) == pytest.approx(3)


async def test_a_lapsed_lease_frees_its_slot() -> None:
    registry, runs = registry_of(concurrency=1)
    core = build_core(clock=LoopClock(), registry=registry)
    dead = await core.service.submit("job", {"customer": "a"})
    waiting = await core.service.submit("job", {"customer": "a"})
    await core.dispatcher.flush()
    core.queue.purge()
    assert await core.tasks.claim(dead.id, core.clock.now(), core.config.lease) is not None  # then it died
    assert await core.tasks.claim(waiting.id, core.clock.now(), core.config.lease) is None  # parked
    assert core.db.throttled == {waiting.id}
    await asyncio.sleep(core.config.lease_s + 1)
    assert (await core.sweeper.sweep_once()).released == 1  # the slot is free again, and...
    assert core.db.throttled == set()
    assert core.queue.depth_of("default") >= 2  # ...the parked task was woken, the released one dispatched
    await run_all(core, [dead.id, waiting.id])
    assert most_at_once(runs) == 1


async def test_a_parked_task_is_not_counted_as_a_lost_wake_up() -> None:
    registry, _ = registry_of(concurrency=1)
    core = build_core(clock=LoopClock(), registry=registry)
    running = await core.service.submit("job", {"customer": "a"})
    parked = await core.service.submit("job", {"customer": "a"})
    await core.dispatcher.flush()
    core.queue.purge()
    await core.tasks.claim(running.id, core.clock.now(), core.config.lease)
    assert await core.tasks.claim(parked.id, core.clock.now(), core.config.lease) is None
    for _ in range(10):
        await asyncio.sleep(10)
        assert (
            await core.census.take_missing(
                ready=0,
                now=core.clock.now(),
                settled_before=core.clock.now(),
                held_since=core.clock.now(),
                persisting=timedelta(seconds=15),
                limit=10,
            )
            == []
        )


async def test_a_rate_limit_spaces_the_starts_and_defers_the_rest_none_dropped() -> None:
    registry, runs = registry_of(rate_limit="20/s")
    core = build_core(clock=LoopClock(), registry=registry)
    ids = [(await core.service.submit("job", {"customer": "a", "n": n})).id for n in range(200)]
    first = now()
    worker = await run_all(core, ids, concurrency=500)
    starts = sorted(start - first for _, start, _ in runs)
    assert len(starts) == 200
    # Any one-second window holds at most 20 starts (the delay buckets add at most 10 % lateness).
    per_second = Counter(int(start) for start in starts)
    assert max(per_second.values()) <= 22
    assert starts[-1] == pytest.approx(199 / 20, rel=0.1)  # 200 starts, one every 50 ms
    assert worker.outcomes[Outcome.DEFERRED] == 199  # each waited once, for its reserved start
    assert {core.db.tasks[i].attempts for i in ids} == {1}  # deferring is not an attempt


async def test_a_rate_key_limits_each_key_on_its_own() -> None:
    registry, runs = registry_of(rate_limit="1/s", rate_key=lambda job: job.customer)
    core = build_core(clock=LoopClock(), registry=registry)
    ids = [(await core.service.submit("job", {"customer": c})).id for c in "aaabbb"]
    first = now()
    await run_all(core, ids)
    for customer in "ab":
        starts = sorted(round(start - first, 1) for c, start, _ in runs if c == customer)
        assert starts[0] == 0
        assert [b - a for a, b in itertools.pairwise(starts)] == [pytest.approx(1, rel=0.11)] * 2


async def test_a_deferred_task_shows_when_it_will_start() -> None:
    registry, _ = registry_of(rate_limit="1/m")
    core = build_core(clock=LoopClock(), registry=registry)
    first = await core.service.submit("job", {"customer": "a"})
    second = await core.service.submit("job", {"customer": "a"})
    assert await core.tasks.claim(first.id, core.clock.now(), core.config.lease) is not None
    deferred = await core.tasks.claim(second.id, core.clock.now(), core.config.lease)
    assert deferred is not None
    assert (deferred.status, deferred.run_at) == (TaskStatus.PENDING, second.run_at + timedelta(minutes=1))
    assert deferred.version == second.version + 1
    assert core.db.tasks[second.id] == deferred
