"""Fixtures for the unit suite: the system composed on the memory adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskcore import CoreConfig, Dispatcher, HandlerRegistry, RetryPolicy, TaskProcessor, TaskService
from taskcore.adapters.memory import MemoryCache, MemoryQueue, MemoryRepository


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler
    async def reverse(text: str) -> str:
        return text[::-1]

    return registry


@pytest.fixture
def config() -> CoreConfig:
    return CoreConfig(retry=RetryPolicy(base_s=0.01, cap_s=0.05), task_timeout_s=5)


@pytest.fixture
def repository() -> MemoryRepository:
    return MemoryRepository()


@pytest.fixture
def queue() -> MemoryQueue:
    return MemoryQueue()


@pytest.fixture
def cache() -> MemoryCache:
    return MemoryCache()


@pytest.fixture
def dispatcher(repository: MemoryRepository, queue: MemoryQueue, clock: ManualClock) -> Dispatcher:
    return Dispatcher(repository=repository, queue=queue, clock=clock, flush_delay_s=0)


@pytest.fixture
def service(
    repository: MemoryRepository,
    dispatcher: Dispatcher,
    cache: MemoryCache,
    clock: ManualClock,
    registry: HandlerRegistry,
    config: CoreConfig,
) -> TaskService:
    return TaskService(
        repository=repository,
        dispatcher=dispatcher,
        cache=cache,
        clock=clock,
        registry=registry,
        config=config,
    )


@pytest.fixture
def processor(
    repository: MemoryRepository,
    dispatcher: Dispatcher,
    cache: MemoryCache,
    clock: ManualClock,
    registry: HandlerRegistry,
    config: CoreConfig,
) -> TaskProcessor:
    return TaskProcessor(
        repository=repository,
        dispatcher=dispatcher,
        cache=cache,
        clock=clock,
        registry=registry,
        config=config,
    )
