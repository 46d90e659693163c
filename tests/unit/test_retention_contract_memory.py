"""The retention contract (``tests/contracts/retention.py``) on ``MemoryPruner``."""

from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryDatabase, MemoryPruner
from tests.contracts.retention import TaskPrunerContract


@pytest.fixture
def pruner(db: MemoryDatabase) -> MemoryPruner:
    return MemoryPruner(db)


class TestMemoryPruner(TaskPrunerContract):
    pass
