"""The queue contract against the in-process adapter the unit tests and ``dev`` mode run on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from taskcore.adapters.memory import MemoryQueue
from tests.contracts.queue import DeadLetters, QueueContract


@pytest.fixture
async def queue() -> AsyncIterator[MemoryQueue]:
    queue = MemoryQueue()
    await queue.open()
    yield queue
    await queue.close()  # cancels delayed messages still pending


@pytest.fixture
def dead_letters(queue: MemoryQueue) -> DeadLetters:
    async def read() -> list[tuple[bytes, str]]:
        return list(queue.dead_letters)

    return read


class TestMemoryQueueContract(QueueContract):
    pass
