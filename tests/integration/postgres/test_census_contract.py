"""The wake-up census contract (``tests/contracts/census.py``) on ``PostgresCensus``,
and what only PostgreSQL has to get right: several sweepers counting at once.
The fixtures are in conftest.py."""

from __future__ import annotations

import asyncio

import pytest

from taskcore.adapters.postgres import PostgresCensus, PostgresTasks
from tests.contracts.census import WakeUpCensusContract, confirmed, ids, take
from tests.integration.databases import Database
from tests.integration.postgres.conftest import Pools

pytestmark = pytest.mark.integration


class TestPostgresCensus(WakeUpCensusContract):
    pass


async def test_concurrent_censuses_never_take_a_task_twice_nor_more_than_the_deficit(
    pools: Pools, database: Database, tasks: PostgresTasks
) -> None:
    """Two sweepers on their own pools count at the same moment, again and
    again: one at a time counts (the advisory lock), the other gets nothing,
    and between them every missing task is taken exactly once."""
    first, second = [
        PostgresCensus(await pools.open(database.url, max_size=2, connect_timeout_s=5.0)) for _ in range(2)
    ]
    added = [await confirmed(tasks, at=1, priority=n % 10) for n in range(60)]
    ready, limit = 15, 20  # 45 missing: three batches at least
    assert await take(first, 100, ready=ready, limit=limit) == []  # remembered since later(100)

    taken: list[int] = []
    for _ in range(10):
        one, other = await asyncio.gather(
            take(first, 115, ready=ready, limit=limit), take(second, 115, ready=ready, limit=limit)
        )
        assert not ids(one) & ids(other)
        assert len(one) <= limit
        assert len(other) <= limit
        if not one and not other:
            break
        taken += [task.id for task in one + other]
    assert len(taken) == len(set(taken)) == 60 - ready  # each once, and the deficit, no more
    assert set(taken) <= ids(added)
    assert await take(first, 115, ready=ready, limit=limit) == []
