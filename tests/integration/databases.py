"""PostgreSQL fixtures: one migrated template per run, a fresh copy per test.

Every test gets its own database, copied from the template with ``CREATE
DATABASE ... TEMPLATE``, so it starts empty and fully migrated and never sees
another test's rows. A copy costs the server ~0.4 s of waiting on fsync, yet
copies made side by side take barely longer than one: ``DatabaseSupply``
makes them a few tests ahead, in threads. Everything created here is dropped
again; the template at the end of the session.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from psycopg.conninfo import make_conninfo

from taskcore.adapters.postgres import migrate

COPIES_AHEAD = 4


class Database(NamedTuple):
    name: str
    url: str


def database_url(server_url: str, name: str) -> str:
    return make_conninfo(server_url, dbname=name)


def create_database(server_url: str, name: str, template: str) -> Database:
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(statement.format(sql.Identifier(name), sql.Identifier(template)))
    return Database(name, database_url(server_url, name))


def drop_database(server_url: str, name: str) -> None:
    # FORCE: a test that failed half-way may have left connections behind.
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(statement.format(sql.Identifier(name)))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_database(database_server_url: str, run_id: str) -> AsyncIterator[str]:
    """The name of a database migrated with ``migrate()``, to copy per test."""
    name = f"{run_id}_template"
    await asyncio.to_thread(create_database, database_server_url, name, "template0")
    try:
        await migrate(database_url(database_server_url, name))
        yield name
    finally:
        await asyncio.to_thread(drop_database, database_server_url, name)


class DatabaseSupply:
    """Copies of the template made ahead of need; drops run in the background too."""

    def __init__(self, server_url: str, run_id: str, template: str) -> None:
        self.server_url = server_url
        self._run_id = run_id
        self._template = template
        self._threads = ThreadPoolExecutor(max_workers=COPIES_AHEAD, thread_name_prefix="taskcore-test-db")
        self._ahead: deque[Future[Database]] = deque(self._order() for _ in range(COPIES_AHEAD))

    def new_name(self) -> str:
        return f"{self._run_id}_{uuid.uuid4().hex[:10]}"

    def _order(self) -> Future[Database]:
        return self._threads.submit(create_database, self.server_url, self.new_name(), self._template)

    async def take(self) -> Database:
        ready = self._ahead.popleft()
        self._ahead.append(self._order())
        return await asyncio.wrap_future(ready)

    def discard(self, name: str) -> None:
        self._threads.submit(drop_database, self.server_url, name)

    def close(self) -> None:
        """Wait for the copies and drops under way, then drop the copies nobody took."""
        self._threads.shutdown(wait=True)
        for future in self._ahead:
            if future.exception() is None:
                drop_database(self.server_url, future.result().name)


@pytest.fixture(scope="session")
def database_supply(
    database_server_url: str, run_id: str, template_database: str
) -> Iterator[DatabaseSupply]:
    supply = DatabaseSupply(database_server_url, run_id, template_database)
    try:
        yield supply
    finally:
        supply.close()


class Databases:
    """Hands out databases for one test and drops them all afterwards."""

    def __init__(self, supply: DatabaseSupply) -> None:
        self.server_url = supply.server_url
        self._supply = supply
        self._taken: list[str] = []

    async def create(self, *, migrated: bool = True) -> Database:
        """A migrated copy of the template, or with ``migrated=False`` an empty database."""
        if migrated:
            database = await self._supply.take()
        else:
            name = self._supply.new_name()
            database = await asyncio.to_thread(create_database, self.server_url, name, "template0")
        self._taken.append(database.name)
        return database

    def drop_all(self) -> None:
        for name in self._taken:
            self._supply.discard(name)
        self._taken.clear()


@pytest.fixture
def databases(database_supply: DatabaseSupply) -> Iterator[Databases]:
    factory = Databases(database_supply)
    try:
        yield factory
    finally:
        factory.drop_all()
