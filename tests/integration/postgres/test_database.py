"""What only the PostgreSQL adapters can get wrong: pools, replicas, outages, driver errors.

``PostgresDatabase`` owns the pools and runs every statement; the per-port
adapters (``PostgresTasks``, ``PostgresRecovery``, ...) are thin over it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC

import msgspec
import psycopg
import pytest
from psycopg import sql

from taskcore.adapters.postgres import (
    PostgresDashboard,
    PostgresDatabase,
    PostgresRecovery,
    PostgresTasks,
    RepositoryError,
)
from taskcore.adapters.postgres.sql import queries
from taskcore.errors import RepositoryUnavailable, UnstorableValue
from taskcore.model.idempotency import IdempotencyKey
from taskcore.model.query import TaskQuery
from taskcore.model.status import TaskStatus
from tests.contracts.tasks import LEASE, later, new_task
from tests.integration.databases import Database, Databases, database_url
from tests.integration.postgres.conftest import Pools

pytestmark = pytest.mark.integration


def closed_port_url() -> str:
    """A URL to a port nobody listens on: bound by us a moment ago, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/taskcore"


async def terminate_connections(server_url: str, database: Database) -> int:
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [database.name],
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


async def connection_count(server_url: str, database: Database) -> int:
    async with await psycopg.AsyncConnection.connect(server_url) as connection:
        cursor = await connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [database.name]
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


async def test_nothing_connects_before_open(databases: Databases, database: Database) -> None:
    db = PostgresDatabase(database.url)
    tasks = PostgresTasks(db)

    assert await connection_count(databases.server_url, database) == 0
    with pytest.raises(RepositoryUnavailable, match="not open"):
        await tasks.get(1)
    await db.close()


async def test_open_fails_fast_when_the_server_is_unreachable() -> None:
    db = PostgresDatabase(closed_port_url(), connect_timeout_s=1.0)
    started = time.monotonic()

    with pytest.raises(RepositoryUnavailable) as raised:
        await db.open()

    assert time.monotonic() - started < 2.0
    assert isinstance(raised.value.__cause__, psycopg.Error)
    with pytest.raises(RepositoryUnavailable):
        await db.ping()


async def test_open_names_the_cause(databases: Databases) -> None:
    db = PostgresDatabase(database_url(databases.server_url, "no_such_database"))

    with pytest.raises(RepositoryUnavailable, match="does not exist"):
        await db.open()


async def test_a_closed_database_can_be_opened_again(database: Database) -> None:
    db = PostgresDatabase(database.url)
    tasks = PostgresTasks(db)
    await db.open()
    await db.ping()
    await db.close()

    with pytest.raises(RepositoryUnavailable):
        await db.ping()
    await db.open()
    try:
        await db.ping()
        assert await tasks.get(1) is None  # an adapter built before the close uses the new pools
    finally:
        await db.close()


async def test_reads_go_to_the_read_database(databases: Databases, pools: Pools) -> None:
    primary, replica = await databases.create(), await databases.create()
    db = await pools.open(primary.url, read_conninfo=replica.url)
    tasks, recovery, dashboard = PostgresTasks(db), PostgresRecovery(db), PostgresDashboard(db)
    replica_writer = PostgresTasks(await pools.open(replica.url))

    written = await tasks.add(new_task())
    assert await tasks.get(written.id) is None
    assert await tasks.find(TaskQuery(status=TaskStatus.PENDING, limit=10)) == []
    claimed = await tasks.claim(written.id, later(1), LEASE)  # writes go to the primary
    assert claimed is not None
    assert await tasks.get(written.id, fresh=True) == claimed  # and so do fresh reads

    only_in_replica = await replica_writer.add(new_task(task_type="replicated"))
    assert await tasks.get(only_in_replica.id) == only_in_replica
    assert await tasks.find(TaskQuery(status=TaskStatus.PENDING, limit=10)) == [only_in_replica]
    # the dashboard answers people: from the replica; the sweeper decides: from the primary
    assert await dashboard.status_counts(None) == {TaskStatus.PENDING: 1}
    assert [task.id for task in await recovery.lapsed(later(60), 10)] == [claimed.id]
    assert await recovery.undispatched(unconfirmed_before=later(60), overdue_before=later(60), limit=10) == []
    await db.ping()


async def test_calls_after_the_server_dropped_the_connections_recover(
    databases: Databases, pools: Pools, database: Database
) -> None:
    db = await pools.open(database.url, min_size=2, max_size=2, connect_timeout_s=2.0)
    tasks = PostgresTasks(db)
    task = await tasks.add(new_task())
    assert await terminate_connections(databases.server_url, database) >= 1

    outcomes: list[str] = []
    causes: list[BaseException | None] = []
    for _ in range(4):
        try:
            outcomes.append("same" if await tasks.get(task.id) == task else "different")
        except RepositoryUnavailable as exc:
            outcomes.append("unavailable")
            causes.append(exc.__cause__)

    # Each pooled connection may fail one call, as RepositoryUnavailable; then the pool has reconnected.
    assert set(outcomes) <= {"same", "unavailable"}
    assert outcomes[-2:] == ["same", "same"]
    assert all(isinstance(cause, psycopg.OperationalError) for cause in causes)
    await db.ping()


async def test_a_refused_statement_is_a_repository_error(tasks: PostgresTasks) -> None:
    with pytest.raises(RepositoryError) as raised:
        await tasks.add(new_task(max_attempts=0))

    assert raised.value.fields["constraint"] == "tasks_max_attempts_positive"
    assert isinstance(raised.value.__cause__, psycopg.errors.CheckViolation)
    assert not isinstance(raised.value, RepositoryUnavailable)


async def test_timestamps_come_back_in_utc_whatever_the_server_zone(
    databases: Databases, pools: Pools, database: Database
) -> None:
    async with await psycopg.AsyncConnection.connect(databases.server_url, autocommit=True) as connection:
        await connection.execute(
            sql.SQL("ALTER DATABASE {} SET timezone TO 'America/St_Johns'").format(
                sql.Identifier(database.name)
            )
        )
    tasks = PostgresTasks(await pools.open(database.url))

    task = await tasks.add(new_task())
    claimed = await tasks.claim(task.id, later(1), LEASE)
    stored = await tasks.get(task.id)

    assert claimed is not None
    assert stored == claimed
    assert {stored.created_at.tzinfo, stored.run_at.tzinfo, claimed.updated_at.tzinfo} == {UTC}


async def test_a_missing_result_is_sql_null_and_a_null_input_is_json_null(
    tasks: PostgresTasks, database: Database
) -> None:
    task = await tasks.add(msgspec.structs.replace(new_task(), input=None))
    claimed = await tasks.claim(task.id, later(1), LEASE)
    assert claimed is not None
    assert await tasks.save(claimed.complete(None, later(2)))

    async with await psycopg.AsyncConnection.connect(database.url) as connection:
        cursor = await connection.execute("SELECT result IS NULL, input = 'null'::jsonb FROM tasks")
        assert await cursor.fetchall() == [(True, True)]


async def test_a_task_that_cannot_be_stored_fails_alone_in_a_coalesced_batch(tasks: PostgresTasks) -> None:
    """Concurrent adds go as one INSERT; a value PostgreSQL refuses (a NUL in
    jsonb text) must fail only its own caller, not the tasks batched with it."""
    good = [msgspec.structs.replace(new_task(), input={"n": n}) for n in range(10)]
    bad = msgspec.structs.replace(new_task(), input={"text": "nul\u0000here"})
    outcomes = await asyncio.gather(
        *(tasks.add(new) for new in [*good[:5], bad, *good[5:]]), return_exceptions=True
    )

    assert isinstance(outcomes[5], UnstorableValue)
    stored = [outcome for index, outcome in enumerate(outcomes) if index != 5]
    assert [task.input for task in stored] == [new.input for new in good]  # type: ignore[union-attr]
    for task in stored:
        assert await tasks.get(task.id) == task  # type: ignore[union-attr]


async def test_an_id_beyond_bigint_in_a_coalesced_claim_fails_nobody(tasks: PostgresTasks) -> None:
    """A poison message can carry 19 digits; batched with real claims it must not fail them."""
    task = await tasks.add(new_task())
    claimed, beyond = await asyncio.gather(
        tasks.claim(task.id, later(1), LEASE), tasks.claim(2**63 + 5, later(1), LEASE)
    )
    assert claimed is not None
    assert claimed.id == task.id
    assert beyond is None


async def test_coalesced_saves_with_no_result_at_all_and_a_refused_one(tasks: PostgresTasks) -> None:
    """A batch whose results are all NULL still types its jsonb[]; a value
    PostgreSQL refuses fails only its own save."""
    claimed = []
    for _ in range(4):
        task = await tasks.add(new_task())
        taken = await tasks.claim(task.id, later(1), LEASE)
        assert taken is not None
        claimed.append(taken)
    failed = [task.fail("boom", later(2), None) for task in claimed[:2]]
    assert await asyncio.gather(*(tasks.save(task) for task in failed)) == [True, True]
    good = claimed[2].complete("fine", later(2))
    bad = claimed[3].complete("nul\u0000here", later(2))
    outcomes = await asyncio.gather(tasks.save(good), tasks.save(bad), return_exceptions=True)
    assert outcomes[0] is True
    assert isinstance(outcomes[1], UnstorableValue)
    assert await tasks.get(good.id) == good
    assert await tasks.get(bad.id) == claimed[3]


async def test_the_key_purge_leaves_a_key_being_taken_over_alone(
    tasks: PostgresTasks, recovery: PostgresRecovery, database: Database
) -> None:
    """A submit taking over an expired key holds its row until it commits; the
    purge passes it over instead of waiting (SKIP LOCKED), and the key taken
    over survives the purges that follow."""
    old = IdempotencyKey(key="k", request_hash="h", expired_before=later(-100))
    await tasks.add_once(new_task(), old)  # first used at T0
    async with await psycopg.AsyncConnection.connect(database.url) as taking_over:
        claimed = await taking_over.execute(
            queries["claim_idempotency_key"],
            {"owner": "", "key": "k", "request_hash": "h2", "now": later(100), "expired_before": later(50)},
        )
        assert await claimed.fetchone() is not None  # taken over, not committed yet
        assert await asyncio.wait_for(recovery.forget_idempotency_keys(later(60), 10), 5) == 0
        await taking_over.commit()
    assert await recovery.forget_idempotency_keys(later(60), 10) == 0  # now first used at later(100)
    async with await psycopg.AsyncConnection.connect(database.url) as reading:
        kept = await reading.execute("SELECT request_hash FROM idempotency_keys WHERE key = 'k'")
        assert await kept.fetchall() == [("h2",)]
