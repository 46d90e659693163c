"""The schedules contract (``tests/contracts/schedules.py``) on ``MemorySchedules``."""

from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryDatabase, MemorySchedules
from tests.contracts.schedules import SchedulesContract


@pytest.fixture
def schedules(db: MemoryDatabase) -> MemorySchedules:
    return MemorySchedules(db)


class TestMemorySchedules(SchedulesContract):
    pass
