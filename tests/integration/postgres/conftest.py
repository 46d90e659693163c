"""PostgreSQL adapter fixtures on top of the shared per-test databases
(``tests/integration/databases.py``).

``database`` is this test's own empty, migrated database; ``db`` a
``PostgresDatabase`` (the pools) opened on it, and ``tasks``, ``recovery``,
``dashboard``, ``roster`` and ``census`` the per-port adapters over that one ``db``, as
the container wires them. A test that needs pools of its own (a replica,
other sizes, a reopened database) opens them through ``pools``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskcore.adapters.postgres import (
    PostgresCensus,
    PostgresDashboard,
    PostgresDatabase,
    PostgresRecovery,
    PostgresTasks,
    PostgresWorkers,
)
from tests.integration.databases import Database, Databases


class Pools:
    """Opens ``PostgresDatabase``s for one test and closes them all afterwards."""

    def __init__(self) -> None:
        self._opened: list[PostgresDatabase] = []

    async def open(self, conninfo: str, **options: Any) -> PostgresDatabase:
        db = PostgresDatabase(conninfo, **options)
        await db.open()
        self._opened.append(db)
        return db

    async def close_all(self) -> None:
        for db in reversed(self._opened):
            await db.close()
        self._opened.clear()


@pytest.fixture
async def pools(databases: Databases) -> AsyncIterator[Pools]:
    # Depends on ``databases`` so that the pools close before the databases drop.
    factory = Pools()
    try:
        yield factory
    finally:
        await factory.close_all()


@pytest.fixture
async def database(databases: Databases) -> Database:
    return await databases.create()


@pytest.fixture
async def db(pools: Pools, database: Database) -> PostgresDatabase:
    return await pools.open(database.url, max_size=10, connect_timeout_s=2.0)


@pytest.fixture
def tasks(db: PostgresDatabase) -> PostgresTasks:
    return PostgresTasks(db)


@pytest.fixture
def recovery(db: PostgresDatabase) -> PostgresRecovery:
    return PostgresRecovery(db)


@pytest.fixture
def dashboard(db: PostgresDatabase) -> PostgresDashboard:
    return PostgresDashboard(db)


@pytest.fixture
def roster(db: PostgresDatabase) -> PostgresWorkers:
    return PostgresWorkers(db)


@pytest.fixture
def census(db: PostgresDatabase) -> PostgresCensus:
    return PostgresCensus(db)
