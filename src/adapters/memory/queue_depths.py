"""``QueueDepths`` over the memory queue, whose ``depth`` is a plain property."""

from __future__ import annotations

from taskcore.adapters.memory.queue import MemoryQueue
from taskcore.errors import QueueUnavailable
from taskcore.model.queues import DEFAULT_QUEUE


class MemoryQueueDepths:
    def __init__(self, queue: MemoryQueue) -> None:
        self._queue = queue

    def _check(self) -> None:
        if not self._queue.available:
            raise QueueUnavailable("memory queue switched off")

    async def depth(self, queue: str = DEFAULT_QUEUE) -> int:
        self._check()
        return self._queue.depth_of(queue)

    async def dead_letter_depth(self, queue: str = DEFAULT_QUEUE) -> int:
        self._check()
        return sum(1 for _, _, name in self._queue.dead_letter_log if name == queue)
