"""The DI container: the one place that decides which adapter backs which port.

Services take plain constructor arguments and never see the container; tests
swap an adapter with ``container.repository.override(...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from dependency_injector import containers, providers

from taskcore.adapters.memory import MemoryCache, MemoryQueue, MemoryRepository
from taskcore.clock import SystemClock
from taskcore.config import CoreConfig
from taskcore.entrypoints.settings import Settings
from taskcore.processor import TaskProcessor
from taskcore.registry import HandlerRegistry
from taskcore.service import TaskService
from taskcore.worker import Worker


def _thread_pool(max_workers: int) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="taskcore-handler")
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    registry = providers.Dependency(instance_of=HandlerRegistry)

    core_config: providers.Provider[CoreConfig] = providers.Callable(lambda s: s.core, settings)
    clock = providers.Singleton(SystemClock)

    repository = providers.Singleton(MemoryRepository)
    queue = providers.Singleton(MemoryQueue)
    cache = providers.Singleton(MemoryCache)

    executor = providers.Resource(_thread_pool, max_workers=settings.provided.worker_concurrency)

    service = providers.Singleton(
        TaskService,
        repository=repository,
        queue=queue,
        cache=cache,
        clock=clock,
        registry=registry,
        config=core_config,
    )
    processor = providers.Singleton(
        TaskProcessor,
        repository=repository,
        queue=queue,
        cache=cache,
        clock=clock,
        registry=registry,
        config=core_config,
        executor=executor,
    )
    worker = providers.Factory(
        Worker,
        processor=processor,
        queue=queue,
        concurrency=settings.provided.worker_concurrency,
        grace_s=settings.provided.shutdown_grace_s,
    )


def build_container(settings: Settings, registry: HandlerRegistry) -> Container:
    return Container(settings=settings, registry=registry)
