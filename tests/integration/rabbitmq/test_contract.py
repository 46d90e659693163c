"""The queue contract against a real broker."""

from __future__ import annotations

import pytest

from tests.contracts.queue import QueueContract

pytestmark = pytest.mark.integration


class TestRabbitQueueContract(QueueContract):
    pass
