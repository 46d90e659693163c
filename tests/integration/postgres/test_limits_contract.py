"""The limits contract (``tests/contracts/limits.py``) on ``PostgresTasks``, and
what only PostgreSQL has to get right: claims from several pools at once."""

from __future__ import annotations

import asyncio

import pytest

from taskcore.adapters.postgres import PostgresDatabase, PostgresQueues, PostgresTasks
from tests.contracts.limits import CAPPED, LIMITS, LimitsContract, add
from tests.contracts.tasks import LEASE, later
from tests.integration.databases import Database
from tests.integration.postgres.conftest import Pools

pytestmark = pytest.mark.integration


@pytest.fixture
def limited(db: PostgresDatabase) -> PostgresTasks:
    return PostgresTasks(db, limits=LIMITS)


@pytest.fixture
def queue_states(db: PostgresDatabase) -> PostgresQueues:
    return PostgresQueues(db)


class TestPostgresLimits(LimitsContract):
    pass


async def test_workers_on_their_own_pools_never_run_more_than_the_limit(
    pools: Pools, database: Database, limited: PostgresTasks
) -> None:
    """Three workers' adapters claim one key's tasks at the same moment, again
    and again: the advisory lock lets them count one at a time."""
    workers = [
        PostgresTasks(await pools.open(database.url, max_size=4, connect_timeout_s=5.0), limits=LIMITS)
        for _ in range(3)
    ]
    tasks = [await add(limited, "capped") for _ in range(30)]
    for round_ in range(5):
        claimed = await asyncio.gather(
            *(workers[n % 3].claim(task.id, later(1 + round_), LEASE) for n, task in enumerate(tasks))
        )
        running = [task for task in claimed if task is not None]
        assert len(running) <= CAPPED.concurrency
        for task in running:  # end them: the next round may claim two others
            assert await limited.save(task.complete("ok", later(1 + round_)))
            tasks.remove(next(t for t in tasks if t.id == task.id))
        assert len(running) == CAPPED.concurrency
