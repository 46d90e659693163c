"""Coalescing concurrent calls into batches (taskcore.batching).

Every test runs on fake loop time (``looptime``): the round trips, the gaps
between callers and the linger are timers that the loop jumps to, and the
Coalescer measures the gaps with ``loop.time()``, so the batches it forms do
not depend on how busy the machine is.
"""

from __future__ import annotations

import asyncio

import pytest

from taskcore.batching import Coalescer

pytestmark = pytest.mark.looptime


class Doubler:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        await asyncio.sleep(0.01)  # a round trip, during which more calls queue up
        return [ValueError(f"odd {n}") if n == 13 else n * 2 for n in items]


async def test_a_lone_call_goes_at_once_and_calls_meanwhile_form_the_next_batch() -> None:
    run = Doubler()
    batcher = Coalescer(run, max_batch=4)
    first = asyncio.create_task(batcher.call(1))
    await asyncio.sleep(0)  # the first batch is on its way
    rest = [asyncio.create_task(batcher.call(n)) for n in range(2, 8)]
    assert [await first, *await asyncio.gather(*rest)] == [2, 4, 6, 8, 10, 12, 14]
    assert run.batches == [[1], [2, 3, 4, 5], [6, 7]]  # bounded by max_batch, in call order


async def test_an_item_error_reaches_only_its_caller() -> None:
    batcher = Coalescer(Doubler())
    outcomes = await asyncio.gather(*(batcher.call(n) for n in (12, 13, 14)), return_exceptions=True)
    assert outcomes[0] == 24
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == 28


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return [*items]

    batcher = Coalescer(flaky)
    failed = await asyncio.gather(batcher.call(1), batcher.call(2), return_exceptions=True)
    assert all(isinstance(outcome, ConnectionError) for outcome in failed)
    assert await batcher.call(3) == 3


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    batcher = Coalescer(Doubler())
    first = asyncio.create_task(batcher.call(1))
    second = asyncio.create_task(batcher.call(2))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == 4


class Instant:
    """A batch that takes no time: without lingering every call would be a batch of its own."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        return list(items)


async def steady(batcher: Coalescer[int, int], calls: int, gap_s: float) -> list[int]:
    """``calls`` callers, one starting every ``gap_s``, as requests arrive under load."""
    started = []
    for n in range(calls):
        started.append(asyncio.create_task(batcher.call(n)))
        await asyncio.sleep(gap_s)
    return list(await asyncio.gather(*started))


async def test_under_load_a_lingering_coalescer_sends_fewer_bigger_batches() -> None:
    without, lingering = Instant(), Instant()
    assert await steady(Coalescer(without), 60, 0.002) == list(range(60))
    assert await steady(Coalescer(lingering, linger_s=0.03), 60, 0.002) == list(range(60))
    assert len(without.batches) == 60
    assert len(lingering.batches) <= 20  # calls every 2 ms ride along for 30 ms, once it is busy
    assert [n for batch in lingering.batches for n in batch] == list(range(60))  # in call order


async def test_a_call_after_a_quiet_spell_does_not_linger() -> None:
    run = Instant()
    batcher = Coalescer(run, linger_s=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await batcher.call(1) == 1
    assert loop.time() - started < 0.1  # not busy: sent at once, not after 0.5 s
    assert not batcher.busy


async def test_a_full_batch_goes_without_lingering() -> None:
    run = Instant()
    batcher = Coalescer(run, max_batch=8, linger_s=0.5)
    await steady(batcher, 20, 0.001)  # busy now
    assert batcher.busy
    loop = asyncio.get_running_loop()
    started = loop.time()
    burst = await asyncio.gather(*(batcher.call(n) for n in range(8)))
    assert burst == list(range(8))
    assert loop.time() - started < 0.4  # eight queued at once fill a batch: no 0.5 s wait
