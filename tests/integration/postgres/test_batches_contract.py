"""The batches contract (``tests/contracts/batches.py``) on ``PostgresTasks``."""

from __future__ import annotations

import pytest

from tests.contracts.batches import TaskBatchesContract

pytestmark = pytest.mark.integration


class TestPostgresBatches(TaskBatchesContract):
    pass
