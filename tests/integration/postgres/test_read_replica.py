"""``PostgresDatabase`` on a real streaming standby as its read replica.

``pg_primary_with_standby`` (``tests/integration/postgres_servers.py``) starts a
private primary and a standby of it once for this module; each test has a
database of its own on them (``replicated_database``) and gets both nodes back
running, with no apply delay, whatever it did to them. Which node answered a
read is shown by the data (a standby told to apply commits an hour late lacks
a task the primary has) or by the standby's ``pg_stat_activity``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import psycopg
import pytest

from taskcore.adapters.postgres import PostgresDatabase, PostgresTasks, RepositoryError
from taskcore.errors import RepositoryUnavailable
from taskcore.model.query import TaskQuery
from tests.contracts.tasks import LEASE, later, new_task
from tests.integration.faults.proxies import TcpProxy
from tests.integration.polling import until
from tests.integration.postgres.conftest import Pools
from tests.integration.postgres_servers import (  # noqa: F401  (fixtures)
    PgNode,
    PrimaryWithStandby,
    ReplicatedDatabase,
    pg_primary_with_standby,
    replicated_database,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LOGGER = "taskcore.adapters.postgres"
AN_HOUR_S = 3600


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


async def reads_from(node: PgNode, database: ReplicatedDatabase, since: datetime | None = None) -> bool:
    """Whether a client session in the test's database on ``node`` last read
    the tasks table (``since`` then, when given)."""
    queries = await asyncio.to_thread(node.client_queries, database.name, since)
    return any("FROM tasks" in query for query in queries)


async def test_rows_written_on_the_primary_stream_to_the_standby(
    pg_primary_with_standby: PrimaryWithStandby,  # noqa: F811
    replicated_database: ReplicatedDatabase,  # noqa: F811
    pools: Pools,
) -> None:
    pair, database = pg_primary_with_standby, replicated_database
    primary = PostgresTasks(await pools.open(database.primary_url))
    standby = PostgresTasks(await pools.open(database.standby_url))

    written = [await primary.add(new_task(task_type=f"streamed {n}")) for n in range(3)]
    await asyncio.to_thread(pair.wait_replayed)

    assert [await standby.get(task.id) for task in written] == written
    assert await asyncio.to_thread(pair.standby.sql, "SELECT pg_is_in_recovery()") == [(True,)]
    receiver = await asyncio.to_thread(
        pair.standby.sql, "SELECT status, sender_port FROM pg_stat_wal_receiver"
    )
    assert receiver == [("streaming", pair.primary.port)]
    with pytest.raises(RepositoryError) as refused:  # a standby is read-only
        await standby.add(new_task())
    assert refused.value.fields["sqlstate"] == "25006"


async def test_replica_reads_come_from_the_standby_and_what_it_lacks_from_the_primary(
    pg_primary_with_standby: PrimaryWithStandby,  # noqa: F811
    replicated_database: ReplicatedDatabase,  # noqa: F811
    pools: Pools,
) -> None:
    pair, database = pg_primary_with_standby, replicated_database
    db = await pools.open(database.primary_url, read_conninfo=database.standby_url)
    tasks = PostgresTasks(db)
    old = await tasks.add(new_task())
    await asyncio.to_thread(pair.wait_replayed)

    await asyncio.to_thread(pair.set_apply_delay, AN_HOUR_S)
    claimed = await tasks.claim(old.id, later(1), LEASE)  # a change the standby shows an hour late
    new = await tasks.add(new_task())

    assert claimed is not None
    assert await tasks.get(old.id) == old  # the standby's, older, row
    assert await tasks.get(new.id) is None  # not on the standby yet ...
    assert await tasks.get(new.id, fresh=True) == new  # ... on the primary
    assert await tasks.find(TaskQuery(limit=10)) == [old]

    await asyncio.to_thread(pair.set_apply_delay, 0)
    await asyncio.to_thread(pair.wait_replayed)
    assert await tasks.get(old.id) == claimed
    assert await tasks.find(TaskQuery(limit=10)) == [new, claimed]


async def test_a_stopped_or_killed_replica_turns_reads_to_the_primary_until_it_is_back(
    pg_primary_with_standby: PrimaryWithStandby,  # noqa: F811
    replicated_database: ReplicatedDatabase,  # noqa: F811
    pools: Pools,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    pair, database = pg_primary_with_standby, replicated_database
    db = await pools.open(database.primary_url, read_conninfo=database.standby_url, replica_retry_s=0.5)
    tasks = PostgresTasks(db)
    task = await tasks.add(new_task())
    await asyncio.to_thread(pair.wait_replayed)
    assert await tasks.find(TaskQuery(limit=10)) == [task]
    assert await reads_from(pair.standby, database)

    for outages, go_away in enumerate((pair.standby.stop, pair.standby.kill), start=1):
        await asyncio.to_thread(go_away)
        for _ in range(20):  # every read answers, from the primary; the first one noticed
            assert await tasks.get(task.id) == task
            assert await tasks.find(TaskQuery(limit=10)) == [task]
        await db.ping()  # the primary is what readiness needs
        with pytest.raises(RepositoryUnavailable, match="away"):
            await db.ping_replica()
        assert len(outage_warnings(caplog)) == outages, outage_warnings(caplog)  # once per outage

        await asyncio.to_thread(pair.standby.start)

        async def back() -> bool:
            assert await tasks.find(TaskQuery(limit=10)) == [task]
            return await reads_from(pair.standby, database)

        await until(back, "reads to go to the restarted standby again", timeout_s=60)
        await db.ping_replica()

    assert len(outage_warnings(caplog)) == 2
    answers_again = [r for r in caplog.records if r.name == LOGGER and "answers again" in r.getMessage()]
    assert len(answers_again) == 2


async def test_a_silent_replica_costs_only_the_read_that_meets_it_a_timeout(
    pg_primary_with_standby: PrimaryWithStandby,  # noqa: F811
    replicated_database: ReplicatedDatabase,  # noqa: F811
    pools: Pools,
) -> None:
    """A partition: the replica's connections stay open but nothing comes back.
    The read that meets it waits out the timeout, then the primary answers;
    the reads after it go straight to the primary."""
    timeout_s = 2.0
    pair, database = pg_primary_with_standby, replicated_database
    with TcpProxy(database.standby_url) as proxy:
        db = await pools.open(
            database.primary_url, read_conninfo=proxy.url, connect_timeout_s=timeout_s, replica_retry_s=0.5
        )
        tasks = PostgresTasks(db)
        task = await tasks.add(new_task())
        await asyncio.to_thread(pair.wait_replayed)
        assert await tasks.get(task.id) == task

        proxy.pause()
        assert await tasks.get(task.id) == task  # after the timeout, from the primary
        for _ in range(20):
            started = time.monotonic()
            assert await tasks.find(TaskQuery(limit=10)) == [task]
            assert time.monotonic() - started < timeout_s  # did not wait on the replica again

        restored = datetime.now(UTC)
        proxy.restore()

        async def back() -> bool:
            assert await tasks.find(TaskQuery(limit=10)) == [task]
            return await reads_from(pair.standby, database, since=restored)

        await until(back, "reads to go to the standby again", timeout_s=60)
        await pools.close_all()  # while the proxy still runs


async def test_open_does_not_wait_for_a_replica_that_is_away(
    pg_primary_with_standby: PrimaryWithStandby,  # noqa: F811
    replicated_database: ReplicatedDatabase,  # noqa: F811
    pools: Pools,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    pair, database = pg_primary_with_standby, replicated_database
    await asyncio.to_thread(pair.standby.stop)

    db = await pools.open(database.primary_url, read_conninfo=database.standby_url, replica_retry_s=0.5)
    tasks = PostgresTasks(db)

    (warning,) = outage_warnings(caplog)
    assert "at start" in warning
    task = await tasks.add(new_task())
    assert await tasks.get(task.id) == task
    assert await tasks.find(TaskQuery(limit=10)) == [task]
    await db.ping()
    with pytest.raises(RepositoryUnavailable, match="away"):
        await db.ping_replica()

    await asyncio.to_thread(pair.standby.start)

    async def replica_answers() -> bool:
        try:
            await db.ping_replica()  # which also starts the reconnection, once due
        except RepositoryUnavailable:
            return False
        return True

    await until(replica_answers, "the replica to answer the readiness ping", timeout_s=60)
    await asyncio.to_thread(pair.wait_replayed)
    assert await tasks.get(task.id) == task
    assert await reads_from(pair.standby, database)
    assert len(outage_warnings(caplog)) == 1


async def test_a_primary_that_is_away_is_still_an_error(
    replicated_database: ReplicatedDatabase,  # noqa: F811
) -> None:
    """Only the replica has a stand-in: a primary URL that does not answer stops ``open()``."""
    db = PostgresDatabase(
        "postgresql://postgres@127.0.0.1:1/nowhere", read_conninfo=replicated_database.standby_url
    )
    with pytest.raises(RepositoryUnavailable) as raised:
        await db.open()
    assert isinstance(raised.value.__cause__, psycopg.OperationalError)
