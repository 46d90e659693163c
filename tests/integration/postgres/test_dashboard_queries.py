"""The dashboard's SQL where only PostgreSQL can get it wrong: time zones and plans.

The behaviour itself (counts, minutes, percentiles, workers) is in the
dashboard contract, which runs here too (test_dashboard_contract.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from taskcore.adapters.postgres import PostgresDashboard, PostgresTasks
from taskcore.adapters.postgres.sql import queries
from tests.contracts.tasks import LEASE, T0, later, new_task
from tests.integration.databases import Database, Databases
from tests.integration.postgres.conftest import Pools

pytestmark = pytest.mark.integration


async def finish(tasks: PostgresTasks, claimed_at: float, finished_at: float) -> None:
    task = await tasks.add(new_task())
    claimed = await tasks.claim(task.id, later(claimed_at), LEASE)
    assert claimed is not None
    assert await tasks.save(claimed.complete("ok", later(finished_at)))


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/St_Johns", "Asia/Kathmandu"])
async def test_minutes_are_utc_minutes_whatever_the_session_zone(
    databases: Databases, pools: Pools, database: Database, zone: str
) -> None:
    """Zones off by a half or quarter hour would shift date_trunc's minutes; date_bin's are UTC."""
    async with await psycopg.AsyncConnection.connect(databases.server_url, autocommit=True) as connection:
        await connection.execute(
            sql.SQL("ALTER DATABASE {} SET timezone TO {}").format(
                sql.Identifier(database.name), sql.Literal(zone)
            )
        )
    db = await pools.open(database.url)
    tasks, dashboard = PostgresTasks(db), PostgresDashboard(db)
    await finish(tasks, claimed_at=1, finished_at=3)
    await finish(tasks, claimed_at=1, finished_at=60)

    minutes = await dashboard.minute_stats(later(-60), None)

    first = T0.replace(second=0, microsecond=0)
    assert [(m.minute, m.completed) for m in minutes] == [(first, 1), (first + timedelta(minutes=1), 1)]


async def plan(url: str, query: str, params: dict[str, Any]) -> str:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        cursor = await connection.execute(b"EXPLAIN " + queries[query].encode(), params)
        return "\n".join(row[0] for row in await cursor.fetchall())


async def test_the_window_is_read_through_the_finished_at_index(
    tasks: PostgresTasks, database: Database
) -> None:
    """With a day of history behind it, the last minutes are an index range, not a scan."""
    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as connection:
        await connection.execute(
            """
            INSERT INTO tasks (type, input, status, attempts, max_attempts, version, created_at, updated_at,
                               run_at, started_at, finished_at)
            SELECT 'echo', '1', 'COMPLETED', 1, 3, 3, at, at, at, at, at
            FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '5 seconds') AS at
            """,
            {"start": later(-86_400), "end": later(-3600)},
        )
        await connection.execute("ANALYZE tasks")
    for n in range(20):
        await finish(tasks, claimed_at=1, finished_at=2 + n)
    everyone = await plan(database.url, "minute_stats", {"since": later(-60), "owner": None})
    assert "tasks_finished_at_idx" in everyone
    # an owner's rows may come through the owner's index instead: either way, no full scan
    assert "Seq Scan" not in await plan(database.url, "minute_stats", {"since": later(-60), "owner": "alice"})
