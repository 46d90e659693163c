"""The wake-up census contract (``tests/contracts/census.py``) on ``MemoryCensus``."""

from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryCensus, MemoryDatabase, MemoryTasks, MemoryWorkers
from tests.contracts.census import WakeUpCensusContract


@pytest.fixture
def db() -> MemoryDatabase:
    return MemoryDatabase()


@pytest.fixture
def tasks(db: MemoryDatabase) -> MemoryTasks:
    return MemoryTasks(db)


@pytest.fixture
def roster(db: MemoryDatabase) -> MemoryWorkers:
    return MemoryWorkers(db)


@pytest.fixture
def census(db: MemoryDatabase) -> MemoryCensus:
    return MemoryCensus(db)


class TestMemoryCensus(WakeUpCensusContract):
    pass
