"""The retention contract (``tests/contracts/retention.py``) on ``PostgresPruner``,
and what only a real database can show: concurrent prunes skip each other's
rows instead of waiting for them, and delete each task once."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from taskcore.adapters.postgres import PostgresDatabase, PostgresPruner
from taskcore.adapters.postgres.retention import prune_params
from taskcore.adapters.postgres.sql import queries
from taskcore.model.retention import PruneCutoffs
from taskcore.model.status import TaskStatus
from tests.contracts.retention import TaskPrunerContract, finished
from tests.contracts.tasks import Tasks, later
from tests.integration.databases import Database

pytestmark = pytest.mark.integration

CUTOFFS = PruneCutoffs(default=later(10**4))
# Far above what these statements take; a prune that waited for a lock would hit it.
PROMPT_S = 5.0


@pytest.fixture
def pruner(db: PostgresDatabase) -> PostgresPruner:
    return PostgresPruner(db)


class TestPostgresPruner(TaskPrunerContract):
    pass


async def finished_tasks(tasks: Tasks, count: int) -> set[int]:
    return {(await finished(tasks, TaskStatus.COMPLETED, 10 + n)).id for n in range(count)}


async def count_tasks(database: Database) -> int:
    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as connection:
        row = await (await connection.execute("SELECT count(*) FROM tasks")).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_prune_skips_the_rows_another_holds_instead_of_waiting(
    pruner: PostgresPruner, tasks: Tasks, database: Database
) -> None:
    """Another sweeper's batch, not yet committed, holds 10 rows: this prune
    takes the other 20 at once, and after the commit nothing is left, each
    task deleted exactly once."""
    await finished_tasks(tasks, 30)
    async with await psycopg.AsyncConnection.connect(database.url) as other:
        held = await other.execute(queries["prune_tasks"], prune_params(CUTOFFS, 10))
        assert held.rowcount == 10  # the oldest ten, deleted but not committed: locked
        assert await asyncio.wait_for(pruner.prune(CUTOFFS, 100), PROMPT_S) == 20
        assert await asyncio.wait_for(pruner.prune(CUTOFFS, 100), PROMPT_S) == 0
        await other.commit()
    assert await pruner.prune(CUTOFFS, 100) == 0
    assert await count_tasks(database) == 0


async def test_a_prune_rolled_back_leaves_its_rows_to_the_next(
    pruner: PostgresPruner, tasks: Tasks, database: Database
) -> None:
    await finished_tasks(tasks, 5)
    async with await psycopg.AsyncConnection.connect(database.url) as other:
        await other.execute(queries["prune_tasks"], prune_params(CUTOFFS, 3))
        assert await asyncio.wait_for(pruner.prune(CUTOFFS, 100), PROMPT_S) == 2
        await other.rollback()  # a sweeper that died mid-batch
    assert await pruner.prune(CUTOFFS, 100) == 3
    assert await count_tasks(database) == 0


async def test_a_task_being_retried_is_skipped_not_waited_for(
    pruner: PostgresPruner, tasks: Tasks, database: Database
) -> None:
    """A transition holding the row (a client's retry of a FAILED task) wins:
    the prune passes it by, and the task, PENDING again, is no longer one to prune."""
    failed = await finished(tasks, TaskStatus.FAILED, 5)
    other_ids = await finished_tasks(tasks, 3)
    async with await psycopg.AsyncConnection.connect(database.url) as other:
        await other.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (failed.id,))
        assert await asyncio.wait_for(pruner.prune(CUTOFFS, 100), PROMPT_S) == len(other_ids)
        await other.rollback()
    assert await tasks.save(failed.retry(later(6)))
    assert await pruner.prune(CUTOFFS, 100) == 0
    stored = await tasks.get(failed.id, fresh=True)
    assert stored is not None
    assert stored.status is TaskStatus.PENDING


def removed_rows(plan: Any) -> int:
    """Rows a plan read and then threw away, over all its nodes."""
    if isinstance(plan, list):
        return sum(removed_rows(node) for node in plan)
    if not isinstance(plan, dict):
        return 0
    own = sum(int(plan.get(key, 0)) for key in ("Rows Removed by Filter", "Rows Removed by Index Recheck"))
    return own + sum(removed_rows(value) for value in plan.values() if isinstance(value, (list, dict)))


async def test_a_batch_never_walks_the_tasks_a_type_keeps(
    pruner: PostgresPruner, tasks: Tasks, database: Database
) -> None:
    """20,000 tasks of a type kept forever, all older than the cutoff, and a
    few to delete: the statement reads past none of the kept ones, so its cost
    does not grow with them (an audit trail grows forever)."""
    for n in range(3):
        await finished(tasks, TaskStatus.COMPLETED, 10 + n, task_type="plain")
    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as connection:
        await connection.execute(
            "INSERT INTO tasks (type, input, status, attempts, max_attempts, version, created_at, updated_at,"
            "                   run_at, started_at, finished_at)"
            " SELECT 'audit', '1', 'COMPLETED', 1, 1, 3, t, t, t, t, t"
            " FROM (SELECT %s - g * interval '1 ms' AS t FROM generate_series(1, 20000) AS g) AS times",
            (later(5),),
        )
        await connection.execute("ANALYZE tasks")
        cutoffs = PruneCutoffs(default=later(100), by_type={"audit": None})
        async with connection.transaction(force_rollback=True):
            explained = await connection.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + queries["prune_tasks"], prune_params(cutoffs, 500)
            )
            row = await explained.fetchone()
    assert row is not None
    assert removed_rows(row[0]) < 100
    assert await pruner.prune(cutoffs, 500) == 3
    assert await count_tasks(database) == 20_000


async def test_concurrent_prunes_delete_every_task_once(
    pruner: PostgresPruner, tasks: Tasks, database: Database
) -> None:
    await finished_tasks(tasks, 200)

    async def sweeper() -> int:
        pruned = 0
        while batch := await pruner.prune(CUTOFFS, 7):
            pruned += batch
        return pruned

    counts = await asyncio.wait_for(asyncio.gather(*(sweeper() for _ in range(4))), 60)
    assert sum(counts) == 200
    assert await count_tasks(database) == 0
