"""The paused-queues contract (``tests/contracts/queues.py``) on ``MemoryQueues``."""

from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryQueues
from tests.contracts.queues import QueueStatesContract
from tests.core import Core


@pytest.fixture
def queue_states(core: Core) -> MemoryQueues:
    return MemoryQueues(core.db)


class TestMemoryQueues(QueueStatesContract):
    pass
