"""The recovery and outbox contracts (``tests/contracts/recovery.py``) on ``MemoryRecovery``."""

from __future__ import annotations

from tests.contracts.recovery import DispatchLogContract, RecoveryStoreContract


class TestMemoryRecovery(RecoveryStoreContract):
    pass


class TestMemoryDispatchLog(DispatchLogContract):
    pass
