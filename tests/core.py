"""The core composed on the memory adapters, the one way tests build it.

``build_core()`` wires what the container wires in production (one shared
``StatusCache`` and ``Transitions`` per process, a ``Dispatcher`` over the
task table), on memory adapters whose state a test can read. Pass any part
to replace it: a clock the test moves, a registry of its own, a config with
a short lease, a telemetry that records, a tracer (``tests/unit/test_tracing.py``).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from taskcore import CoreConfig, HandlerRegistry, RetryPolicy, TaskProcessor, TaskService
from taskcore.adapters.memory import (
    MemoryCache,
    MemoryCensus,
    MemoryChangeFeed,
    MemoryDashboard,
    MemoryDatabase,
    MemoryPruner,
    MemoryQueue,
    MemoryQueueDepths,
    MemoryRecovery,
    MemoryTasks,
    MemoryTelemetry,
    MemoryWorkers,
    MemoryWorkflows,
)
from taskcore.model.webhooks import CallbackPolicy
from taskcore.ports import Clock, SubmitTracing, WorkTracing
from taskcore.transitions.announcer import ChangeAnnouncer
from taskcore.transitions.dispatch import Dispatcher
from taskcore.transitions.status_cache import COMPLETED_MEMO, StatusCache
from taskcore.transitions.writer import Transitions
from taskcore.work.retention import Retention
from taskcore.work.sweeper import Sweeper
from taskcore.workflows.service import WorkflowService


class Tracing(SubmitTracing, WorkTracing, Protocol):
    """Both paths' tracing ports: what ``OtelTracing`` and ``NoTracing`` are."""


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class LoopClock:
    """The event loop's time as a wall clock. Under ``looptime`` the loop's
    time is fake and jumps over idle waits, so leases, delays, heartbeats and
    sleeps all agree with this clock, and a test never depends on the
    machine's speed."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._start + timedelta(seconds=asyncio.get_running_loop().time())


def reverse_registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler
    async def reverse(text: str) -> str:
        return text[::-1]

    return registry


def quick_config(**changes: object) -> CoreConfig:
    """Short retry delays and timeouts, so tests never wait on defaults meant for production."""
    settings: dict[str, object] = {"retry": RetryPolicy(base_s=0.01, cap_s=0.05), "task_timeout_s": 5}
    settings.update(changes)
    return CoreConfig(**settings)  # type: ignore[arg-type]


@dataclass
class Core:
    clock: Clock
    registry: HandlerRegistry
    config: CoreConfig
    db: MemoryDatabase
    tasks: MemoryTasks
    recovery: MemoryRecovery
    pruner: MemoryPruner
    dashboard: MemoryDashboard
    roster: MemoryWorkers
    census: MemoryCensus
    queue: MemoryQueue
    cache: MemoryCache
    changes: MemoryChangeFeed
    telemetry: MemoryTelemetry
    dispatcher: Dispatcher
    announcer: ChangeAnnouncer
    status_cache: StatusCache
    transitions: Transitions
    service: TaskService
    processor: TaskProcessor
    retention: Retention
    sweeper: Sweeper
    workflow_store: MemoryWorkflows
    workflows: WorkflowService

    async def aclose(self) -> None:
        """What the process does at shutdown: flush confirmations and announcements."""
        await self.dispatcher.aclose()
        await self.announcer.aclose()


def build_core(
    *,
    clock: Clock | None = None,
    registry: HandlerRegistry | None = None,
    config: CoreConfig | None = None,
    db: MemoryDatabase | None = None,
    queue: MemoryQueue | None = None,
    cache: MemoryCache | None = None,
    changes: MemoryChangeFeed | None = None,
    telemetry: MemoryTelemetry | None = None,
    executor: Executor | None = None,
    flush_delay_s: float = 0,
    completed_memo: int = COMPLETED_MEMO,
    tracing: Tracing | None = None,
) -> Core:
    clock = clock or ManualClock()
    registry = registry or reverse_registry()
    config = config or quick_config()
    db = db or MemoryDatabase()
    tasks = MemoryTasks(db, limits=registry.limits_of)
    queue = queue if queue is not None else MemoryQueue(clock)
    cache = cache if cache is not None else MemoryCache()
    changes = changes if changes is not None else MemoryChangeFeed()
    telemetry = telemetry if telemetry is not None else MemoryTelemetry()
    recovery = MemoryRecovery(db)
    pruner = MemoryPruner(db)
    retention = Retention(pruner=pruner, registry=registry, clock=clock, config=config)
    census = MemoryCensus(db)
    dispatcher = Dispatcher(log=tasks, queue=queue, clock=clock, flush_delay_s=flush_delay_s)
    announcer = ChangeAnnouncer(changes)
    status_cache = StatusCache(cache, config, announcer, completed_memo=completed_memo)
    workflows = MemoryWorkflows(db)
    transitions = Transitions(
        store=tasks, cache=status_cache, dispatcher=dispatcher, slots=tasks, dependencies=workflows
    )
    service = TaskService(
        tasks=tasks,
        transitions=transitions,
        registry=registry,
        clock=clock,
        idempotency_ttl=config.idempotency_ttl,
        telemetry=telemetry,
        finder=tasks,
        batches=tasks,
        transactional=tasks,
        # Callbacks signed (the sender's secret is the test's) and allowed to
        # any address: the address checks have tests of their own.
        callbacks=CallbackPolicy(allow_private=True),
        tracing=tracing,
    )
    return Core(
        clock=clock,
        registry=registry,
        config=config,
        db=db,
        tasks=tasks,
        recovery=recovery,
        pruner=pruner,
        dashboard=MemoryDashboard(db),
        roster=MemoryWorkers(db),
        census=census,
        queue=queue,
        cache=cache,
        changes=changes,
        telemetry=telemetry,
        dispatcher=dispatcher,
        announcer=announcer,
        status_cache=status_cache,
        transitions=transitions,
        service=service,
        processor=TaskProcessor(
            attempts=tasks,
            transitions=transitions,
            clock=clock,
            registry=registry,
            config=config,
            executor=executor,
            telemetry=telemetry,
            dependencies=workflows,
            tracing=tracing,
        ),
        retention=retention,
        sweeper=Sweeper(
            recovery=recovery,
            transitions=transitions,
            clock=clock,
            config=config,
            telemetry=telemetry,
            census=census,
            depths=MemoryQueueDepths(queue),
            dependencies=workflows,
            retention=retention,
        ),
        workflow_store=workflows,
        workflows=WorkflowService(store=workflows, tasks=service, transitions=transitions, clock=clock),
    )
