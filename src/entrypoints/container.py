"""The DI container: the one place that decides which adapter backs which port.

Each port is backed by its networked adapter when its URL is set and by the
memory adapter otherwise (``taskcore api`` and ``worker`` refuse to start
without all three URLs; ``taskcore dev`` accepts any mix). Services take plain
constructor arguments and never see the container; tests swap an adapter with
``container.tasks.override(...)``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from dependency_injector import containers, providers

from taskcore.adapters import otel
from taskcore.adapters.cron import CronsimCalendar
from taskcore.adapters.memory import (
    MemoryCache,
    MemoryCensus,
    MemoryChangeFeed,
    MemoryCommitNotices,
    MemoryDashboard,
    MemoryDatabase,
    MemoryPruner,
    MemoryQueue,
    MemoryQueueDepths,
    MemoryQueues,
    MemoryRecovery,
    MemorySchedules,
    MemoryTasks,
    MemoryWebhooks,
    MemoryWorkers,
    MemoryWorkflows,
)
from taskcore.adapters.postgres import (
    PostgresCensus,
    PostgresCommitNotices,
    PostgresDashboard,
    PostgresDatabase,
    PostgresPruner,
    PostgresQueues,
    PostgresRecovery,
    PostgresSchedules,
    PostgresTasks,
    PostgresWebhooks,
    PostgresWorkers,
    PostgresWorkflows,
)
from taskcore.adapters.prometheus import PrometheusTelemetry, QueueDepthPoller
from taskcore.adapters.rabbitmq import RabbitQueue
from taskcore.adapters.redis import RedisCache, RedisChangeFeed
from taskcore.adapters.webhooks import HttpWebhookPoster
from taskcore.clock import SystemClock
from taskcore.config import CoreConfig
from taskcore.dashboard.stats import StatsService
from taskcore.entrypoints.settings import Settings
from taskcore.entrypoints.stopping import StopRequest
from taskcore.errors import ConfigurationError
from taskcore.handlers.registry import HandlerRegistry
from taskcore.model.webhooks import CallbackPolicy, DeliveryRetries
from taskcore.ports import QueueDepths
from taskcore.queues.admin import QueueAdmin
from taskcore.schedules.admin import ScheduleAdmin
from taskcore.schedules.scheduler import Scheduler
from taskcore.schedules.timing import Timing
from taskcore.submit.reads import TaskReads
from taskcore.submit.service import TaskService
from taskcore.submit.waiting import ChangeListener, TaskWatcher
from taskcore.telemetry import MeteredCache
from taskcore.tracing import NoTracing
from taskcore.transitions.announcer import ChangeAnnouncer
from taskcore.transitions.dispatch import Dispatcher
from taskcore.transitions.status_cache import StatusCache
from taskcore.transitions.writer import Transitions
from taskcore.webhooks.admin import WebhookAdmin
from taskcore.webhooks.sender import WebhookSender
from taskcore.work.committed import CommitListener
from taskcore.work.pauses import PauseWatcher
from taskcore.work.presence import WorkerPresence
from taskcore.work.processor import TaskProcessor
from taskcore.work.retention import Retention
from taskcore.work.sweeper import Sweeper
from taskcore.work.worker import Worker
from taskcore.workflows.service import WorkflowService

if TYPE_CHECKING:
    from taskcore.adapters.otel.tracing import OtelTracing


def _thread_pool(max_workers: int) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="taskcore-handler")
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


async def _queue_depth_readings(
    queue: object, telemetry: PrometheusTelemetry, queues: list[str]
) -> AsyncIterator[None]:
    """Reads the queue depths into the gauges every few seconds while the process runs."""
    depths = _queue_depths(queue)
    if depths is None:
        yield None
        return
    poller = QueueDepthPoller(depths, telemetry, queues=queues)
    poller.start()
    try:
        yield None
    finally:
        await poller.stop()


def _queue_depths(queue: object) -> QueueDepths | None:
    """The broker's depths, the memory queue's (whose ``depth`` is a property),
    or none for a queue that cannot tell (an override in a test)."""
    if isinstance(queue, MemoryQueue):
        return MemoryQueueDepths(queue)
    if callable(getattr(queue, "depth", None)) and callable(getattr(queue, "dead_letter_depth", None)):
        return cast(QueueDepths, queue)
    return None


def _connection_name() -> str:
    """Names this process's broker connection, so an operator can find (or close) it."""
    return f"taskcore-{socket.gethostname()}-{os.getpid()}"


def _worker_queues(settings: Settings, registry: HandlerRegistry) -> list[str]:
    """The queues a worker consumes: those ``TASKCORE_WORKER_QUEUES`` (``--queue``)
    names, each one the registry knows, or every queue of the registry."""
    named = settings.worker_queue_names()
    if named is None:
        return registry.queues()
    unknown = [name for name in named if name not in registry.queues()]
    if unknown:
        raise ConfigurationError(
            f"TASKCORE_WORKER_QUEUES: no handler uses the queue {', '.join(map(repr, unknown))};"
            f" the registry's queues are {', '.join(registry.queues())}"
        )
    return named


def _tracing(settings: Settings) -> NoTracing | OtelTracing:
    """OpenTelemetry when ``TASKCORE_OTEL`` asks for it (``auto``: when the
    extra is installed), else ``NoTracing``, which imports nothing."""
    exporting = settings.otel_exporter != "none"
    if settings.otel == "off":
        if exporting:
            raise ConfigurationError(
                "TASKCORE_OTEL_EXPORTER: exporting spans needs TASKCORE_OTEL on, not off"
            )
        return NoTracing()
    if not otel.installed(sdk=exporting):
        needed = "opentelemetry-sdk" if otel.installed() else "opentelemetry-api"
        if settings.otel == "on" or exporting:
            variable = "TASKCORE_OTEL_EXPORTER" if exporting else "TASKCORE_OTEL"
            raise ConfigurationError(f"{variable}: {needed} is not installed: pip install 'taskcore[otel]'")
        return NoTracing()
    return otel.otel_tracing()


def _span_export(settings: Settings, tracing: NoTracing | OtelTracing) -> Iterator[None]:
    """With ``TASKCORE_OTEL_EXPORTER=console``, this process prints its spans
    (a JSON object a line, on standard output) until it stops."""
    if settings.otel_exporter == "none" or isinstance(tracing, NoTracing):
        yield None
        return
    stop = otel.export_spans(settings.otel_exporter)
    try:
        yield None
    finally:
        stop()


def _backend(url: str | None, name: str) -> str:
    return name if url else "memory"


def _port_on(
    backend: providers.Provider[str], database: providers.Provider[Any], memory: type, postgres: type
) -> providers.Selector[Any]:
    """One port's adapter over the process's one database: the memory view of
    the memory tables, or the PostgreSQL statements over the pools."""
    return providers.Selector(
        backend,
        memory=providers.Singleton(memory, database),
        postgres=providers.Singleton(postgres, database),
    )


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    registry = providers.Dependency(instance_of=HandlerRegistry)

    core_config: providers.Provider[CoreConfig] = providers.Callable(lambda s: s.core, settings)
    # Every named queue of the registry, and the ones this process's worker consumes.
    queues: providers.Provider[list[str]] = providers.Callable(lambda r: r.queues(), registry)
    worker_queues = providers.Callable(_worker_queues, settings, registry)
    clock = providers.Singleton(SystemClock)
    # SIGTERM/SIGINT before the process runs anything: start-up gives up at once.
    stop_request = providers.Singleton(StopRequest)
    # Seconds that only ever go forward, for intervals (stalls, cached readings).
    monotonic: providers.Provider[Callable[[], float]] = providers.Object(time.monotonic)

    # The database: one state (PostgreSQL's pools, or the memory tables) behind
    # one adapter per port.
    database_backend = providers.Callable(_backend, settings.provided.database_url, "postgres")
    database = providers.Selector(
        database_backend,
        memory=providers.Singleton(MemoryDatabase),
        postgres=providers.Singleton(
            PostgresDatabase,
            settings.provided.database_url,
            read_conninfo=settings.provided.database_read_url,
            max_size=settings.provided.database_pool_size,
            connect_timeout_s=settings.provided.database_timeout_s,
        ),
    )
    # Each type's concurrency and rate limits, as the claim applies them.
    limits = providers.Callable(lambda r: r.limits_of, registry)
    tasks = providers.Selector(
        database_backend,
        memory=providers.Singleton(MemoryTasks, database, limits=limits),
        postgres=providers.Singleton(
            PostgresTasks,
            database,
            batch_linger_s=settings.provided.batch_linger_s,
            limits=limits,
            clock=clock.provided.now,
        ),
    )
    recovery = _port_on(database_backend, database, MemoryRecovery, PostgresRecovery)
    pruner = _port_on(database_backend, database, MemoryPruner, PostgresPruner)
    dashboard = _port_on(database_backend, database, MemoryDashboard, PostgresDashboard)
    roster = _port_on(database_backend, database, MemoryWorkers, PostgresWorkers)
    census = _port_on(database_backend, database, MemoryCensus, PostgresCensus)
    queue_states = _port_on(database_backend, database, MemoryQueues, PostgresQueues)
    workflow_store = providers.Selector(
        database_backend,
        memory=providers.Singleton(MemoryWorkflows, database),
        postgres=providers.Singleton(
            PostgresWorkflows, database, batch_linger_s=settings.provided.batch_linger_s
        ),
    )
    queue = providers.Selector(
        providers.Callable(_backend, settings.provided.amqp_url, "rabbitmq"),
        memory=providers.Singleton(MemoryQueue, clock),
        rabbitmq=providers.Singleton(
            RabbitQueue,
            settings.provided.amqp_url,
            queue_name=settings.provided.queue_name,
            queues=queues,
            queue_type=settings.provided.amqp_queue_type,
            connect_timeout_s=settings.provided.amqp_timeout_s,
            publish_timeout_s=settings.provided.amqp_timeout_s,
            connection_name=providers.Callable(_connection_name),
        ),
    )
    cache = providers.Selector(
        providers.Callable(_backend, settings.provided.redis_url, "redis"),
        memory=providers.Singleton(MemoryCache),
        redis=providers.Singleton(
            RedisCache,
            settings.provided.redis_url,
            prefix=settings.provided.cache_prefix,
            cluster=settings.provided.redis_cluster,
            timeout_s=settings.provided.redis_timeout_s,
            batch_linger_s=settings.provided.batch_linger_s,
        ),
    )

    changes = providers.Selector(
        providers.Callable(_backend, settings.provided.redis_url, "redis"),
        memory=providers.Singleton(MemoryChangeFeed),
        redis=providers.Singleton(
            RedisChangeFeed,
            settings.provided.redis_url,
            channel=providers.Callable(lambda prefix: f"{prefix}changes", settings.provided.cache_prefix),
            timeout_s=settings.provided.redis_timeout_s,
        ),
    )

    executor = providers.Resource(_thread_pool, max_workers=settings.provided.worker_concurrency)

    telemetry = providers.Singleton(PrometheusTelemetry)
    # OpenTelemetry spans (README "Tracing"), or NoTracing; the export, if this process prints them.
    tracing = providers.Singleton(_tracing, settings)
    span_export = providers.Resource(_span_export, settings, tracing)
    metered_cache = providers.Singleton(MeteredCache, cache, telemetry)
    queue_depths = providers.Resource(_queue_depth_readings, queue, telemetry, queues)

    dispatcher = providers.Singleton(
        Dispatcher, log=tasks, queue=queue, clock=clock, batch=settings.provided.wake_up_batch
    )
    # One per process, shared, so a write missed by the processor is replayed by the sweeper.
    announcer = providers.Singleton(ChangeAnnouncer, changes)
    status_cache = providers.Singleton(StatusCache, metered_cache, core_config, announcer)
    transitions = providers.Singleton(
        Transitions,
        store=tasks,
        cache=status_cache,
        dispatcher=dispatcher,
        slots=tasks,
        dependencies=workflow_store,
    )
    service = providers.Singleton(
        TaskService,
        tasks=tasks,
        transitions=transitions,
        registry=registry,
        clock=clock,
        idempotency_ttl=core_config.provided.idempotency_ttl,
        telemetry=telemetry,
        finder=tasks,
        batches=tasks,
        transactional=tasks,
        callbacks=providers.Factory(
            CallbackPolicy,
            signing=providers.Callable(lambda s: s.webhook_secret is not None, settings),
            allow_private=settings.provided.webhook_allow_private,
        ),
        tracing=tracing,
    )
    reads = providers.Singleton(TaskReads, tasks=tasks, cache=status_cache)
    workflows = providers.Singleton(
        WorkflowService, store=workflow_store, tasks=service, transitions=transitions, clock=clock
    )
    # Waking the tasks enqueued in callers' transactions once they commit (one listener among the workers).
    commit_notices = providers.Selector(
        database_backend,
        memory=providers.Singleton(MemoryCommitNotices, database),
        postgres=providers.Singleton(
            PostgresCommitNotices,
            settings.provided.database_url,
            connect_timeout_s=settings.provided.database_timeout_s,
        ),
    )
    commit_listener = providers.Singleton(
        CommitListener, notices=commit_notices, reader=tasks, transitions=transitions
    )
    # Completion webhooks: the endpoints and deliveries, the sender in every
    # worker, and the HTTP side's admin.
    webhook_store = _port_on(database_backend, database, MemoryWebhooks, PostgresWebhooks)
    # Its HTTP client is closed with the process (lifecycle.open_resources).
    webhook_poster = providers.Singleton(
        HttpWebhookPoster,
        timeout_s=settings.provided.webhook_timeout_s,
        allow_private=settings.provided.webhook_allow_private,
    )
    webhook_sender = providers.Singleton(
        WebhookSender,
        outbox=webhook_store,
        poster=webhook_poster,
        clock=clock,
        retries=providers.Factory(
            DeliveryRetries,
            base_s=settings.provided.webhook_retry_base_s,
            window_s=settings.provided.webhook_retry_window_s,
        ),
        callback_secret=settings.provided.webhook_secret,
        timeout_s=settings.provided.webhook_timeout_s,
        concurrency=settings.provided.webhook_concurrency,
        telemetry=telemetry,
    )
    webhook_admin = providers.Singleton(
        WebhookAdmin,
        endpoints=webhook_store,
        reads=webhook_store,
        clock=clock,
        allow_private=settings.provided.webhook_allow_private,
    )
    # Periodic schedules: the store, the API's admin, and the scheduler in every worker.
    schedule_store = _port_on(database_backend, database, MemorySchedules, PostgresSchedules)
    timing = providers.Singleton(Timing, providers.Singleton(CronsimCalendar))
    schedule_admin = providers.Singleton(
        ScheduleAdmin,
        store=schedule_store,
        switches=schedule_store,
        timing=timing,
        tasks=service,
        clock=clock,
    )
    scheduler = providers.Singleton(
        Scheduler,
        firings=schedule_store,
        admin=schedule_admin,
        timing=timing,
        tasks=service,
        transitions=transitions,
        clock=clock,
        declared=providers.Callable(lambda r: r.schedules(), registry),
        types=providers.Callable(lambda r: r.names(), registry),
        grace_s=settings.provided.schedule_grace_s,
        max_sleep_s=settings.provided.schedule_poll_s,
        telemetry=telemetry,
    )
    # The worker's view of the paused queues: its consumer and its processor share it.
    pauses = providers.Singleton(PauseWatcher, queue_states, worker_queues)
    processor = providers.Singleton(
        TaskProcessor,
        attempts=tasks,
        transitions=transitions,
        clock=clock,
        registry=registry,
        config=core_config,
        executor=executor,
        telemetry=telemetry,
        pauses=pauses,
        dependencies=workflow_store,
        tracing=tracing,
    )
    # Deleting finished tasks past their retention: each sweep, and `taskcore prune`.
    retention = providers.Singleton(
        Retention, pruner=pruner, registry=registry, clock=clock, config=core_config
    )
    sweeper = providers.Singleton(
        Sweeper,
        recovery=recovery,
        transitions=transitions,
        clock=clock,
        config=core_config,
        telemetry=telemetry,
        census=census,
        depths=providers.Callable(_queue_depths, queue),
        queues=queues,
        dependencies=workflow_store,
        retention=retention,
    )
    # The API's one subscription, shared by every waiting request.
    listener = providers.Singleton(ChangeListener, changes)
    watcher = providers.Singleton(
        TaskWatcher,
        reads,
        listener,
        recheck_s=settings.provided.wait_recheck_s,
        max_wait_s=settings.provided.wait_max_s,
        max_stream_s=settings.provided.events_max_s,
    )
    worker = providers.Factory(
        Worker,
        processor=processor,
        queue=queue,
        concurrency=settings.provided.worker_concurrency,
        grace_s=settings.provided.shutdown_grace_s,
        sweeper=sweeper,
        telemetry=telemetry,
        stall_s=settings.provided.worker_stall_s,
        monotonic=monotonic,
        presence=providers.Singleton(WorkerPresence, roster=roster, clock=clock),
        queues=worker_queues,
        pauses=pauses,
        backgrounds=providers.List(commit_listener, webhook_sender, scheduler),
    )
    # Pause, resume, and GET /queues.
    queue_admin = providers.Singleton(
        QueueAdmin,
        switches=queue_states,
        loads=queue_states,
        registry=registry,
        clock=clock,
        depths=providers.Callable(_queue_depths, queue),
    )
    # The dashboard's numbers (GET /stats).
    stats = providers.Singleton(
        StatsService,
        dashboard=dashboard,
        tasks=tasks,
        roster=roster,
        clock=clock,
        queue=providers.Callable(_queue_depths, queue),
        queues=queues,
        monotonic=monotonic,
    )


def build_container(settings: Settings, registry: HandlerRegistry) -> Container:
    return Container(settings=settings, registry=registry)
