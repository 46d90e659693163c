"""The paused-queues contract (``tests/contracts/queues.py``) on ``PostgresQueues``."""

from __future__ import annotations

import pytest

from taskcore.adapters.postgres import PostgresDatabase, PostgresQueues
from tests.contracts.queues import QueueStatesContract

pytestmark = pytest.mark.integration


@pytest.fixture
def queue_states(db: PostgresDatabase) -> PostgresQueues:
    return PostgresQueues(db)


class TestPostgresQueues(QueueStatesContract):
    pass
