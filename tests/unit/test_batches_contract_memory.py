"""The batches contract (``tests/contracts/batches.py``) on ``MemoryTasks``."""

from __future__ import annotations

from tests.contracts.batches import TaskBatchesContract


class TestMemoryBatches(TaskBatchesContract):
    pass
