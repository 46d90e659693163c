"""The dashboard and roster contracts (``tests/contracts/dashboard.py``) on
``MemoryDashboard`` and ``MemoryWorkers``."""

from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryDashboard, MemoryDatabase, MemoryTasks, MemoryWorkers
from tests.contracts.dashboard import DashboardReadsContract, WorkerRosterContract


@pytest.fixture
def db() -> MemoryDatabase:
    return MemoryDatabase()


@pytest.fixture
def tasks(db: MemoryDatabase) -> MemoryTasks:
    return MemoryTasks(db)


@pytest.fixture
def dashboard(db: MemoryDatabase) -> MemoryDashboard:
    return MemoryDashboard(db)


@pytest.fixture
def roster(db: MemoryDatabase) -> MemoryWorkers:
    return MemoryWorkers(db)


class TestMemoryDashboard(DashboardReadsContract):
    pass


class TestMemoryWorkers(WorkerRosterContract):
    pass
