"""The schedules contract (``tests/contracts/schedules.py``) on ``PostgresSchedules`` (migration 0021)."""

from __future__ import annotations

import pytest

from taskcore.adapters.postgres import PostgresDatabase, PostgresSchedules
from tests.contracts.schedules import SchedulesContract

pytestmark = pytest.mark.integration


@pytest.fixture
def schedules(db: PostgresDatabase) -> PostgresSchedules:
    return PostgresSchedules(db)


class TestPostgresSchedules(SchedulesContract):
    pass
