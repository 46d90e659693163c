"""The queue contract against the in-process adapter the unit tests and ``dev`` mode run on.

On fake loop time (``looptime``): the contract's waits ("nothing arrives
within QUIET_S", "a delayed message arrives after its delay") are loop timers
the loop jumps to, and the queue's delays are due by ``LoopClock``, the same
fake time, so no test depends on how fast the machine is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from taskcore.adapters.memory import MemoryQueue
from tests.contracts.queue import DeadLetters, QueueContract
from tests.core import LoopClock

pytestmark = pytest.mark.looptime


@pytest.fixture
async def queue() -> AsyncIterator[MemoryQueue]:
    queue = MemoryQueue(LoopClock())
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
