"""The dashboard and roster contracts (``tests/contracts/dashboard.py``) on
``PostgresDashboard`` and ``PostgresWorkers``; the fixtures are in conftest.py."""

from __future__ import annotations

import pytest

from tests.contracts.dashboard import DashboardReadsContract, WorkerRosterContract

pytestmark = pytest.mark.integration


class TestPostgresDashboard(DashboardReadsContract):
    pass


class TestPostgresWorkers(WorkerRosterContract):
    pass
