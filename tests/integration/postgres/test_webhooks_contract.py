"""The webhooks contract (``tests/contracts/webhooks.py``) on ``PostgresWebhooks``
(the deliveries made by the trigger of migration 0019)."""

from __future__ import annotations

import pytest

from taskcore.adapters.postgres import PostgresDatabase, PostgresWebhooks
from tests.contracts.webhooks import WebhooksContract

pytestmark = pytest.mark.integration


@pytest.fixture
def webhooks(db: PostgresDatabase) -> PostgresWebhooks:
    return PostgresWebhooks(db)


class TestPostgresWebhooks(WebhooksContract):
    pass
