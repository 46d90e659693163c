"""The dashboard and roster contracts (``tests/contracts/dashboard.py``) on
``MemoryDashboard`` and ``MemoryWorkers``."""

from __future__ import annotations

from tests.contracts.dashboard import DashboardReadsContract, WorkerRosterContract


class TestMemoryDashboard(DashboardReadsContract):
    pass


class TestMemoryWorkers(WorkerRosterContract):
    pass
