"""In-process adapters for every port.

They are real implementations with state a test can read (``tasks``,
``dead_letters``, ``entries``) and the same guards as the networked adapters,
so the embedded ``taskcore dev`` mode and the unit tests run the true
lifecycle. ``available = False`` makes an adapter fail like an unreachable
service.
"""

from taskcore.adapters.memory.cache import MemoryCache
from taskcore.adapters.memory.changes import MemoryChangeFeed
from taskcore.adapters.memory.queue import MemoryQueue
from taskcore.adapters.memory.queue_depths import MemoryQueueDepths
from taskcore.adapters.memory.repository import MemoryRepository
from taskcore.adapters.memory.telemetry import MemoryTelemetry

__all__ = [
    "MemoryCache",
    "MemoryChangeFeed",
    "MemoryQueue",
    "MemoryQueueDepths",
    "MemoryRepository",
    "MemoryTelemetry",
]
