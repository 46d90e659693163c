"""PostgreSQL repository fixtures on top of the shared per-test databases
(``tests/integration/databases.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskcore.adapters.postgres import PostgresRepository
from tests.integration.databases import Database, Databases


class Repositories:
    """Opens repositories for one test and closes them all afterwards."""

    def __init__(self) -> None:
        self._opened: list[PostgresRepository] = []

    async def open(self, conninfo: str, **options: Any) -> PostgresRepository:
        repository = PostgresRepository(conninfo, **options)
        await repository.open()
        self._opened.append(repository)
        return repository

    async def close_all(self) -> None:
        for repository in reversed(self._opened):
            await repository.close()
        self._opened.clear()


@pytest.fixture
async def repositories(databases: Databases) -> AsyncIterator[Repositories]:
    # Depends on ``databases`` so that the pools close before the databases drop.
    factory = Repositories()
    try:
        yield factory
    finally:
        await factory.close_all()


@pytest.fixture
async def database(databases: Databases) -> Database:
    return await databases.create()


@pytest.fixture
async def repository(repositories: Repositories, database: Database) -> PostgresRepository:
    return await repositories.open(database.url, max_size=10, connect_timeout_s=2.0)
