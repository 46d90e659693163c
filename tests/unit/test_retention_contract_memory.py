"""The retention contract (``tests/contracts/retention.py``) on ``MemoryPruner``."""

from __future__ import annotations

from tests.contracts.retention import TaskPrunerContract


class TestMemoryPruner(TaskPrunerContract):
    pass
