"""Fixtures for the unit suite: the system composed on the memory adapters (``tests.core``)."""

from __future__ import annotations

import pytest

from taskcore import CoreConfig, HandlerRegistry, TaskProcessor, TaskService
from taskcore.adapters.memory import MemoryCache, MemoryDatabase, MemoryQueue, MemoryTasks
from taskcore.transitions.dispatch import Dispatcher
from taskcore.work.sweeper import Sweeper
from tests.core import Core, ManualClock, build_core, quick_config, reverse_registry

__all__ = ["ManualClock"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def registry() -> HandlerRegistry:
    return reverse_registry()


@pytest.fixture
def config() -> CoreConfig:
    return quick_config()


@pytest.fixture
def core(clock: ManualClock, registry: HandlerRegistry, config: CoreConfig) -> Core:
    return build_core(clock=clock, registry=registry, config=config)


@pytest.fixture
def db(core: Core) -> MemoryDatabase:
    return core.db


@pytest.fixture
def tasks(core: Core) -> MemoryTasks:
    return core.tasks


@pytest.fixture
def queue(core: Core) -> MemoryQueue:
    return core.queue


@pytest.fixture
def cache(core: Core) -> MemoryCache:
    return core.cache


@pytest.fixture
def dispatcher(core: Core) -> Dispatcher:
    return core.dispatcher


@pytest.fixture
def service(core: Core) -> TaskService:
    return core.service


@pytest.fixture
def processor(core: Core) -> TaskProcessor:
    return core.processor


@pytest.fixture
def sweeper(core: Core) -> Sweeper:
    return core.sweeper
