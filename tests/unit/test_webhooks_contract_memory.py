"""The webhooks contract (``tests/contracts/webhooks.py``) on ``MemoryWebhooks``."""

from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryDatabase, MemoryWebhooks
from tests.contracts.webhooks import WebhooksContract


@pytest.fixture
def webhooks(db: MemoryDatabase) -> MemoryWebhooks:
    return MemoryWebhooks(db)


class TestMemoryWebhooks(WebhooksContract):
    pass
