"""The limits contract (``tests/contracts/limits.py``) on ``MemoryTasks``."""

from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryQueues, MemoryTasks
from tests.contracts.limits import LIMITS, LimitsContract
from tests.core import Core


@pytest.fixture
def limited(core: Core) -> MemoryTasks:
    return MemoryTasks(core.db, limits=LIMITS)


@pytest.fixture
def queue_states(core: Core) -> MemoryQueues:
    return MemoryQueues(core.db)


class TestMemoryLimits(LimitsContract):
    pass
