"""Coalescing concurrent calls into batches (taskcore.batching)."""

from __future__ import annotations

import asyncio

import pytest

from taskcore.batching import Coalescer


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
        return items

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
