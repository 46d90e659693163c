"""What only the PostgreSQL adapter can get wrong: pools, replicas, outages, driver errors."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC

import msgspec
import psycopg
import pytest
from psycopg import sql

from taskcore.adapters.postgres import PostgresRepository, RepositoryError
from taskcore.adapters.postgres.sql import queries
from taskcore.errors import RepositoryUnavailable
from taskcore.idempotency import IdempotencyKey
from taskcore.query import TaskQuery
from taskcore.status import TaskStatus
from tests.contracts.repository import LEASE, later, new_task
from tests.integration.databases import Database, Databases, database_url
from tests.integration.postgres.conftest import Repositories

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
    repository = PostgresRepository(database.url)

    assert await connection_count(databases.server_url, database) == 0
    with pytest.raises(RepositoryUnavailable, match="not open"):
        await repository.get(1)
    await repository.close()


async def test_open_fails_fast_when_the_server_is_unreachable() -> None:
    repository = PostgresRepository(closed_port_url(), connect_timeout_s=1.0)
    started = time.monotonic()

    with pytest.raises(RepositoryUnavailable) as raised:
        await repository.open()

    assert time.monotonic() - started < 2.0
    assert isinstance(raised.value.__cause__, psycopg.Error)
    with pytest.raises(RepositoryUnavailable):
        await repository.ping()


async def test_open_names_the_cause(databases: Databases) -> None:
    repository = PostgresRepository(database_url(databases.server_url, "no_such_database"))

    with pytest.raises(RepositoryUnavailable, match="does not exist"):
        await repository.open()


async def test_a_closed_repository_can_be_opened_again(database: Database) -> None:
    repository = PostgresRepository(database.url)
    await repository.open()
    await repository.ping()
    await repository.close()

    with pytest.raises(RepositoryUnavailable):
        await repository.ping()
    await repository.open()
    try:
        await repository.ping()
    finally:
        await repository.close()


async def test_reads_go_to_the_read_database(databases: Databases, repositories: Repositories) -> None:
    primary, replica = await databases.create(), await databases.create()
    repository = await repositories.open(primary.url, read_conninfo=replica.url)
    replica_writer = await repositories.open(replica.url)

    written = await repository.add(new_task())
    assert await repository.get(written.id) is None
    assert await repository.find(TaskQuery(status=TaskStatus.PENDING, limit=10)) == []
    assert await repository.claim(written.id, later(1), LEASE) is not None  # writes go to the primary

    only_in_replica = await replica_writer.add(new_task(task_type="replicated"))
    assert await repository.get(only_in_replica.id) == only_in_replica
    assert await repository.find(TaskQuery(status=TaskStatus.PENDING, limit=10)) == [only_in_replica]
    await repository.ping()


async def test_calls_after_the_server_dropped_the_connections_recover(
    databases: Databases, repositories: Repositories, database: Database
) -> None:
    repository = await repositories.open(database.url, min_size=2, max_size=2, connect_timeout_s=2.0)
    task = await repository.add(new_task())
    assert await terminate_connections(databases.server_url, database) >= 1

    outcomes: list[str] = []
    causes: list[BaseException | None] = []
    for _ in range(4):
        try:
            outcomes.append("same" if await repository.get(task.id) == task else "different")
        except RepositoryUnavailable as exc:
            outcomes.append("unavailable")
            causes.append(exc.__cause__)

    # Each pooled connection may fail one call, as RepositoryUnavailable; then the pool has reconnected.
    assert set(outcomes) <= {"same", "unavailable"}
    assert outcomes[-2:] == ["same", "same"]
    assert all(isinstance(cause, psycopg.OperationalError) for cause in causes)
    await repository.ping()


async def test_a_refused_statement_is_a_repository_error(repository: PostgresRepository) -> None:
    with pytest.raises(RepositoryError) as raised:
        await repository.add(new_task(max_attempts=0))

    assert raised.value.fields["constraint"] == "tasks_max_attempts_positive"
    assert isinstance(raised.value.__cause__, psycopg.errors.CheckViolation)
    assert not isinstance(raised.value, RepositoryUnavailable)


async def test_timestamps_come_back_in_utc_whatever_the_server_zone(
    databases: Databases, repositories: Repositories, database: Database
) -> None:
    async with await psycopg.AsyncConnection.connect(databases.server_url, autocommit=True) as connection:
        await connection.execute(
            sql.SQL("ALTER DATABASE {} SET timezone TO 'America/St_Johns'").format(
                sql.Identifier(database.name)
            )
        )
    repository = await repositories.open(database.url)

    task = await repository.add(new_task())
    claimed = await repository.claim(task.id, later(1), LEASE)
    stored = await repository.get(task.id)

    assert claimed is not None
    assert stored == claimed
    assert {stored.created_at.tzinfo, stored.run_at.tzinfo, claimed.updated_at.tzinfo} == {UTC}


async def test_a_missing_result_is_sql_null_and_a_null_input_is_json_null(
    repository: PostgresRepository, database: Database
) -> None:
    task = await repository.add(msgspec.structs.replace(new_task(), input=None))
    claimed = await repository.claim(task.id, later(1), LEASE)
    assert claimed is not None
    assert await repository.save(claimed.complete(None, later(2)))

    async with await psycopg.AsyncConnection.connect(database.url) as connection:
        cursor = await connection.execute("SELECT result IS NULL, input = 'null'::jsonb FROM tasks")
        assert await cursor.fetchall() == [(True, True)]


async def test_a_task_that_cannot_be_stored_fails_alone_in_a_coalesced_batch(
    repository: PostgresRepository,
) -> None:
    """Concurrent adds go as one INSERT; a value PostgreSQL refuses (a NUL in
    jsonb text) must fail only its own caller, not the tasks batched with it."""
    import asyncio

    from taskcore.errors import UnstorableValue

    good = [msgspec.structs.replace(new_task(), input={"n": n}) for n in range(10)]
    bad = msgspec.structs.replace(new_task(), input={"text": "nul\u0000here"})
    outcomes = await asyncio.gather(
        *(repository.add(new) for new in [*good[:5], bad, *good[5:]]), return_exceptions=True
    )

    assert isinstance(outcomes[5], UnstorableValue)
    stored = [outcome for index, outcome in enumerate(outcomes) if index != 5]
    assert [task.input for task in stored] == [new.input for new in good]  # type: ignore[union-attr]
    for task in stored:
        assert await repository.get(task.id) == task  # type: ignore[union-attr]


async def test_an_id_beyond_bigint_in_a_coalesced_claim_fails_nobody(repository: PostgresRepository) -> None:
    """A poison message can carry 19 digits; batched with real claims it must not fail them."""
    import asyncio

    task = await repository.add(new_task())
    claimed, beyond = await asyncio.gather(
        repository.claim(task.id, later(1), LEASE), repository.claim(2**63 + 5, later(1), LEASE)
    )
    assert claimed is not None
    assert claimed.id == task.id
    assert beyond is None


async def test_coalesced_saves_with_no_result_at_all_and_a_refused_one(
    repository: PostgresRepository,
) -> None:
    """A batch whose results are all NULL still types its jsonb[]; a value
    PostgreSQL refuses fails only its own save."""
    import asyncio

    from taskcore.errors import UnstorableValue

    claimed = []
    for _ in range(4):
        task = await repository.add(new_task())
        taken = await repository.claim(task.id, later(1), LEASE)
        assert taken is not None
        claimed.append(taken)
    failed = [task.fail("boom", later(2), None) for task in claimed[:2]]
    assert await asyncio.gather(*(repository.save(task) for task in failed)) == [True, True]
    good = claimed[2].complete("fine", later(2))
    bad = claimed[3].complete("nul\u0000here", later(2))
    outcomes = await asyncio.gather(repository.save(good), repository.save(bad), return_exceptions=True)
    assert outcomes[0] is True
    assert isinstance(outcomes[1], UnstorableValue)
    assert await repository.get(good.id) == good
    assert await repository.get(bad.id) == claimed[3]


async def test_the_key_purge_leaves_a_key_being_taken_over_alone(
    repository: PostgresRepository, database: Database
) -> None:
    """A submit taking over an expired key holds its row until it commits; the
    purge passes it over instead of waiting (SKIP LOCKED), and the key taken
    over survives the purges that follow."""
    old = IdempotencyKey(key="k", request_hash="h", expired_before=later(-100))
    await repository.add_once(new_task(), old)  # first used at T0
    async with await psycopg.AsyncConnection.connect(database.url) as taking_over:
        claimed = await taking_over.execute(
            queries["claim_idempotency_key"],
            {"owner": "", "key": "k", "request_hash": "h2", "now": later(100), "expired_before": later(50)},
        )
        assert await claimed.fetchone() is not None  # taken over, not committed yet
        assert await asyncio.wait_for(repository.forget_idempotency_keys(later(60), 10), 5) == 0
        await taking_over.commit()
    assert await repository.forget_idempotency_keys(later(60), 10) == 0  # now first used at later(100)
    async with await psycopg.AsyncConnection.connect(database.url) as reading:
        kept = await reading.execute("SELECT request_hash FROM idempotency_keys WHERE key = 'k'")
        assert await kept.fetchall() == [("h2",)]
