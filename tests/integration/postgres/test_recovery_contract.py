"""The recovery and outbox contracts (``tests/contracts/recovery.py``) on
``PostgresRecovery`` and ``PostgresTasks``; the fixtures are in conftest.py."""

from __future__ import annotations

import pytest

from tests.contracts.recovery import DispatchLogContract, RecoveryStoreContract

pytestmark = pytest.mark.integration


class TestPostgresRecovery(RecoveryStoreContract):
    pass


class TestPostgresDispatchLog(DispatchLogContract):
    pass
