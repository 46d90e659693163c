"""The recovery and outbox contracts (``tests/contracts/recovery.py``) on ``MemoryRecovery``."""

from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryDatabase, MemoryRecovery, MemoryTasks
from tests.contracts.recovery import DispatchLogContract, RecoveryStoreContract


@pytest.fixture
def db() -> MemoryDatabase:
    return MemoryDatabase()


@pytest.fixture
def tasks(db: MemoryDatabase) -> MemoryTasks:
    return MemoryTasks(db)


@pytest.fixture
def recovery(db: MemoryDatabase) -> MemoryRecovery:
    return MemoryRecovery(db)


class TestMemoryRecovery(RecoveryStoreContract):
    pass


class TestMemoryDispatchLog(DispatchLogContract):
    pass
