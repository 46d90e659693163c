"""``QueueDepths`` over the memory queue, whose ``depth`` is a plain property."""

from __future__ import annotations

from taskcore.adapters.memory.queue import MemoryQueue
from taskcore.errors import QueueUnavailable


class MemoryQueueDepths:
    def __init__(self, queue: MemoryQueue) -> None:
        self._queue = queue

    def _check(self) -> None:
        if not self._queue.available:
            raise QueueUnavailable("memory queue switched off")

    async def depth(self) -> int:
        self._check()
        return self._queue.depth

    async def dead_letter_depth(self) -> int:
        self._check()
        return len(self._queue.dead_letters)
