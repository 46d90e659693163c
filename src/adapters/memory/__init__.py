"""In-process adapters for every port.

They are real implementations with state a test can read
(``MemoryDatabase.tasks``, ``MemoryQueue.dead_letters``, ``MemoryCache.entries``)
and the same guards as the networked adapters, so the embedded ``taskcore dev``
mode and the unit tests run the true
lifecycle. ``available = False`` makes an adapter fail like an unreachable
service.
"""

from taskcore.adapters.memory.cache import MemoryCache
from taskcore.adapters.memory.census import MemoryCensus
from taskcore.adapters.memory.changes import MemoryChangeFeed
from taskcore.adapters.memory.dashboard import MemoryDashboard, MemoryWorkers
from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.adapters.memory.queue import MemoryQueue
from taskcore.adapters.memory.queue_depths import MemoryQueueDepths
from taskcore.adapters.memory.queues import MemoryQueues
from taskcore.adapters.memory.recovery import MemoryRecovery
from taskcore.adapters.memory.retention import MemoryPruner
from taskcore.adapters.memory.schedules import MemorySchedules
from taskcore.adapters.memory.tasks import MemoryTasks
from taskcore.adapters.memory.telemetry import MemoryTelemetry
from taskcore.adapters.memory.transactional import MemoryCommitNotices, MemoryTransaction
from taskcore.adapters.memory.webhooks import MemoryWebhooks
from taskcore.adapters.memory.workflows import MemoryWorkflows

__all__ = [
    "MemoryCache",
    "MemoryCensus",
    "MemoryChangeFeed",
    "MemoryCommitNotices",
    "MemoryDashboard",
    "MemoryDatabase",
    "MemoryPruner",
    "MemoryQueue",
    "MemoryQueueDepths",
    "MemoryQueues",
    "MemoryRecovery",
    "MemorySchedules",
    "MemoryTasks",
    "MemoryTelemetry",
    "MemoryTransaction",
    "MemoryWebhooks",
    "MemoryWorkers",
    "MemoryWorkflows",
]
