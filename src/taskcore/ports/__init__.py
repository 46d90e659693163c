"""The ports the core needs from the outside world, as small async Protocols.

They are phrased as use cases ("claim this task"), not storage primitives, and
split by who calls them, so each use case takes only what it uses and a new
capability adds a port rather than widening one. The records they exchange
live below them, in ``taskcore.model``. Adapters raise only taskcore errors
(``RepositoryUnavailable``, ``QueueUnavailable``, ``CacheUnavailable``), never
their driver's.
"""

from taskcore.ports.batches import TaskBatches
from taskcore.ports.broker import Consumer, Delivery, TaskQueue
from taskcore.ports.cache import ChangeFeed, TaskCache
from taskcore.ports.census import WakeUpCensus
from taskcore.ports.clock import Clock
from taskcore.ports.dashboard import DashboardReads, QueueDepths, WorkerRoster
from taskcore.ports.limits import ConcurrencySlots
from taskcore.ports.queues import QueueLoads, QueueSwitches
from taskcore.ports.retention import TaskPruner
from taskcore.ports.schedules import CronCalendar, ScheduleFirings, ScheduleStore, ScheduleSwitches
from taskcore.ports.tasks import (
    AttemptStore,
    DispatchLog,
    RecoveryStore,
    TaskFinder,
    TaskReader,
    TaskStore,
    TransitionStore,
)
from taskcore.ports.telemetry import (
    CacheTelemetry,
    RecoveryTelemetry,
    SubmitTelemetry,
    WebhookTelemetry,
    WorkTelemetry,
)
from taskcore.ports.tracing import ClaimSpan, RunSpan, SubmitSpan, SubmitTracing, WorkTracing
from taskcore.ports.transactional import CommitNotices, Transaction, TransactionalStore
from taskcore.ports.webhooks import DeliveryReads, WebhookEndpoints, WebhookOutbox, WebhookPoster
from taskcore.ports.workflows import Dependencies, WorkflowStore

__all__ = [
    "AttemptStore",
    "CacheTelemetry",
    "ChangeFeed",
    "ClaimSpan",
    "Clock",
    "CommitNotices",
    "ConcurrencySlots",
    "Consumer",
    "CronCalendar",
    "DashboardReads",
    "Delivery",
    "DeliveryReads",
    "Dependencies",
    "DispatchLog",
    "QueueDepths",
    "QueueLoads",
    "QueueSwitches",
    "RecoveryStore",
    "RecoveryTelemetry",
    "RunSpan",
    "ScheduleFirings",
    "ScheduleStore",
    "ScheduleSwitches",
    "SubmitSpan",
    "SubmitTelemetry",
    "SubmitTracing",
    "TaskBatches",
    "TaskCache",
    "TaskFinder",
    "TaskPruner",
    "TaskQueue",
    "TaskReader",
    "TaskStore",
    "Transaction",
    "TransactionalStore",
    "TransitionStore",
    "WakeUpCensus",
    "WebhookEndpoints",
    "WebhookOutbox",
    "WebhookPoster",
    "WebhookTelemetry",
    "WorkTelemetry",
    "WorkTracing",
    "WorkerRoster",
    "WorkflowStore",
]
