"""Unique keys under real concurrency on PostgreSQL: the index decides.

The contract (``tests/contracts/unique.py``) covers the rule on one pool,
where concurrent adds are coalesced into few statements. Here the submits
come from several pools at once (as from several API processes), as
coalesced batches, lone statements and Idempotency-Key transactions, and the
holder finishes at the worst moment: between the INSERT that found the key
taken and the read of its holder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec
import psycopg
import pytest

from taskcore.adapters.postgres import PostgresDatabase, PostgresTasks
from taskcore.adapters.postgres.inserts import TaskInserts
from taskcore.model.idempotency import IdempotencyKey
from taskcore.model.query import TaskQuery
from taskcore.model.task import NewTask
from taskcore.model.uniqueness import Added
from tests.contracts.tasks import LEASE, T0, later, new_task
from tests.integration.databases import Database

from .conftest import Pools

pytestmark = pytest.mark.integration

POOLS = 4
SUBMITS_PER_POOL = 50


def keyed(key: str, n: int = 0) -> NewTask:
    return msgspec.structs.replace(new_task(), input={"n": n}, unique_key=key)


async def test_concurrent_submits_of_one_key_from_several_pools_make_one_task(
    pools: Pools, database: Database
) -> None:
    """200 submits of one key in flight at once over four pools (coalesced or
    not), with Idempotency-Key transactions among them: one task, and every
    caller gets it."""
    adapters = []
    for n in range(POOLS):
        db = await pools.open(database.url, max_size=4, connect_timeout_s=10.0)
        # Half the pools batch under load as the API does, half send each add alone.
        adapters.append(PostgresTasks(db, batch_linger_s=0.005 if n % 2 else 0.0))
    calls = []
    for n in range(POOLS * SUBMITS_PER_POOL):
        tasks = adapters[n % POOLS]
        if n % 5 == 0:
            key = IdempotencyKey(key=f"i{n}", request_hash="h", expired_before=T0 - LEASE)
            calls.append(tasks.add_once(keyed("hot", n), key))
        else:
            calls.append(tasks.add_unique(keyed("hot", n)))
    outcomes = await asyncio.gather(*calls)

    assert len({outcome.task.id for outcome in outcomes}) == 1
    assert sum(outcome.created for outcome in outcomes) == 1
    rows = await adapters[0].find(TaskQuery(limit=1000), fresh=True)
    assert [task.unique_key for task in rows] == ["hot"]


async def test_many_keys_at_once_make_one_task_each(pools: Pools, database: Database) -> None:
    adapters = [
        PostgresTasks(await pools.open(database.url, max_size=4), batch_linger_s=0.005) for _ in range(3)
    ]
    calls = [adapters[n % 3].add_unique(keyed(f"k{n % 20}", n)) for n in range(300)]
    outcomes = await asyncio.gather(*calls)
    by_key: dict[str, set[int]] = {}
    for outcome in outcomes:
        by_key.setdefault(outcome.task.unique_key or "", set()).add(outcome.task.id)
    assert {key: len(ids) for key, ids in by_key.items()} == {f"k{n}": 1 for n in range(20)}
    assert sum(outcome.created for outcome in outcomes) == 20


class FinishingHolder(PostgresDatabase):
    """Completes the holder of the key (from another connection) just before
    the adapter reads who holds it: the INSERT found the key taken, and the
    read finds it free."""

    def __init__(self, conninfo: str, holder_id: int) -> None:
        super().__init__(conninfo)
        self._conninfo_for_race = conninfo
        self._holder_id = holder_id
        self.raced = 0

    async def run(self, name: str, params: Mapping[str, Any], **options: Any) -> Any:
        if name == "unique_key_holders" and not self.raced:
            self.raced += 1
            async with await psycopg.AsyncConnection.connect(self._conninfo_for_race, autocommit=True) as c:
                await c.execute(
                    "UPDATE tasks SET status = 'COMPLETED', finished_at = now(), lease_until = NULL,"
                    " version = version + 1 WHERE id = %s",
                    (self._holder_id,),
                )
        return await super().run(name, params, **options)


async def test_a_holder_that_finishes_between_the_insert_and_the_read_frees_the_key(
    tasks: PostgresTasks, database: Database
) -> None:
    holder = await tasks.add_unique(keyed("k"))
    assert holder.created
    racing = FinishingHolder(database.url, holder.task.id)
    await racing.open()
    try:
        added = await PostgresTasks(racing).add_unique(keyed("k", 1))
    finally:
        await racing.close()
    assert racing.raced == 1
    assert added.created  # inserted again once the key was free
    assert added.task.id != holder.task.id
    assert await tasks.add_unique(keyed("k", 2)) == Added(added.task, created=False)


async def test_the_holders_lookup_uses_the_unique_index(db: PostgresDatabase, database: Database) -> None:
    tasks = PostgresTasks(db)
    await asyncio.gather(*(tasks.add(new_task(created_at=later(n))) for n in range(200)))
    await tasks.add_unique(keyed("k"))
    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as connection:
        await connection.execute("ANALYZE tasks")
        await connection.execute("SET enable_seqscan = off")
        plan = await connection.execute(
            "EXPLAIN SELECT tasks.* FROM tasks"
            " JOIN unnest(ARRAY['echo'], ARRAY[''], ARRAY['k']) AS slot(type, owner, unique_key)"
            " ON tasks.type = slot.type AND coalesce(tasks.owner, '') = slot.owner"
            " AND tasks.unique_key = slot.unique_key"
            " WHERE tasks.unique_key IS NOT NULL AND tasks.status IN ('PENDING', 'PROCESSING')"
        )
        text = "\n".join(row[0] for row in await plan.fetchall())
    assert "tasks_unique_key_idx" in text, text


async def test_batches_of_the_same_keys_in_opposite_orders_do_not_deadlock(
    pools: Pools, database: Database
) -> None:
    """Two processes' batches holding the same keys, one in the reverse order of
    the other: each waits for the other's uncommitted row of a key unless
    both insert their keys in one order. A deadlock would cost its batch a
    second and then fail it (RepositoryUnavailable)."""
    first, second = [TaskInserts(await pools.open(database.url, max_size=2)) for _ in range(2)]
    keys = [f"k{n}" for n in range(1000)]
    for round_ in range(5):
        news = [keyed(f"{key}-{round_}") for key in keys]
        outcomes = await asyncio.gather(
            first.add_batch(news),  # one statement each, as two coalesced batches would be
            second.add_batch(news[::-1]),
        )
        for batch in outcomes:
            assert not [outcome for outcome in batch if isinstance(outcome, BaseException)]
        assert sum(isinstance(o, Added) and o.created for batch in outcomes for o in batch) == len(keys)
