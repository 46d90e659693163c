"""The query KEDA scales the workers on (deploy/kubernetes/components/keda), run on the real schema.

The manifests' shape is checked in tests/unit/test_kubernetes.py; here the
SQL itself, exactly as the ScaledObject carries it: what it counts, that it
stays on the partial indexes, and that the read-only role README
"Kubernetes" grants may run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.integration.databases import Database

pytestmark = pytest.mark.integration

SCALED_OBJECT = Path(__file__).parents[3] / "deploy/kubernetes/components/keda/scaledobject.yaml"


def keda_query() -> str:
    (scaled,) = (o for o in yaml.safe_load_all(SCALED_OBJECT.read_text()) if o["kind"] == "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    query: str = trigger["metadata"]["query"]
    return query


async def count(url: str) -> object:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        cursor = await connection.execute(keda_query().encode())
        rows = await cursor.fetchall()
    assert len(rows) == 1
    assert len(rows[0]) == 1  # KEDA reads one number from one row
    return rows[0][0]


INSERT = """
INSERT INTO tasks (type, input, status, attempts, max_attempts, version, created_at, updated_at, run_at,
                   queue, blocked, throttled, lease_until, started_at, finished_at)
SELECT 'echo', '1', %(status)s::task_status, %(attempts)s, 3, 1, now(), now(), now() + %(due_in)s::interval,
       %(queue)s, %(blocked)s, %(throttled)s,
       CASE WHEN %(status)s::task_status = 'PROCESSING' THEN now() + interval '30 seconds' END,
       CASE WHEN %(status)s::task_status <> 'PENDING' THEN now() END,
       CASE WHEN %(status)s::task_status IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN now() END
FROM generate_series(1, %(n)s)
"""


async def add(
    connection: psycopg.AsyncConnection[Any],
    status: str,
    n: int = 1,
    *,
    due_in: str = "-1 minute",
    queue: str = "default",
    blocked: bool = False,
    throttled: bool = False,
) -> None:
    await connection.execute(
        INSERT,
        {
            "status": status,
            "attempts": 0 if status == "PENDING" else 1,
            "due_in": due_in,
            "queue": queue,
            "blocked": blocked,
            "throttled": throttled,
            "n": n,
        },
    )


async def test_it_counts_the_due_claimable_tasks_and_the_running_ones(database: Database) -> None:
    assert await count(database.url) == 0  # a number, never NULL: KEDA cannot read NULL
    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as connection:
        await add(connection, "PENDING", 3)  # due: counted
        await add(connection, "PENDING", queue="emails")  # due, its queue running: counted
        await add(connection, "PENDING", 2, queue="reports")  # due, its queue paused: not counted
        await add(connection, "PENDING", due_in="1 hour")  # scheduled: not yet
        await add(connection, "PENDING", blocked=True)  # a workflow step waiting for others
        await add(connection, "PENDING", throttled=True)  # parked by its concurrency limit
        await add(connection, "PROCESSING", 2)  # running: counted
        for final in ("COMPLETED", "FAILED", "CANCELLED"):
            await add(connection, final)
        await connection.execute(
            "INSERT INTO queues (name, paused, updated_at)"
            " VALUES ('reports', true, now()), ('emails', false, now())"
        )
        assert await count(database.url) == 3 + 1 + 2

        await connection.execute("UPDATE queues SET paused = false WHERE name = 'reports'")
        assert await count(database.url) == 3 + 1 + 2 + 2


async def test_it_stays_on_the_partial_indexes(database: Database) -> None:
    """Polled every 15 s: never a scan of the whole table, however much history it holds."""
    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as connection:
        await add(connection, "COMPLETED", 20_000)
        await add(connection, "PENDING", 2_000, due_in="1 hour")
        await add(connection, "PENDING", 50)
        await add(connection, "PROCESSING", 20)
        await connection.execute("ANALYZE tasks")
        cursor = await connection.execute(b"EXPLAIN " + keda_query().encode())
        plan = "\n".join(row[0] for row in await cursor.fetchall())
    assert "Seq Scan on tasks" not in plan, plan
    assert "tasks_pending_run_at_idx" in plan, plan
    assert await count(database.url) == 50 + 20


async def test_the_read_only_role_of_the_readme_may_run_it(database: Database, run_id: str) -> None:
    """README "Kubernetes": KEDA's own role, SELECT on two tables and a statement timeout."""
    role, password = f"{run_id}_keda", "only-for-this-test"
    grants = [
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(database.name), sql.Identifier(role)
        ),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)),
        sql.SQL("GRANT SELECT ON tasks, queues TO {}").format(sql.Identifier(role)),
        sql.SQL("ALTER ROLE {} SET statement_timeout = '5s'").format(sql.Identifier(role)),
    ]
    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as admin:
        try:
            for statement in grants:
                await admin.execute(statement)
            await add(admin, "PENDING", 2)
            keda_url = make_conninfo(database.url, user=role, password=password)
            assert await count(keda_url) == 2
            async with await psycopg.AsyncConnection.connect(keda_url, autocommit=True) as keda:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    await keda.execute("SELECT count(*) FROM workers")  # nothing beyond the two tables
        finally:
            cursor = await admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            if await cursor.fetchone():
                # its grants first (here and on the database), or the role cannot go
                await admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
