"""Fixtures for the unit suite: the system composed on the memory adapters (``tests.core``).

Every port's fixture views the same fresh ``MemoryDatabase``, so the memory runners
of the contract suites (``test_*_contract_memory.py``) need no fixtures of their own.
"""

from __future__ import annotations

import pytest

from taskcore import CoreConfig, HandlerRegistry, TaskProcessor, TaskService
from taskcore.adapters.memory import (
    MemoryCache,
    MemoryCensus,
    MemoryDashboard,
    MemoryDatabase,
    MemoryPruner,
    MemoryQueue,
    MemoryRecovery,
    MemoryTasks,
    MemoryWorkers,
)
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
def recovery(core: Core) -> MemoryRecovery:
    return core.recovery


@pytest.fixture
def pruner(core: Core) -> MemoryPruner:
    return core.pruner


@pytest.fixture
def dashboard(core: Core) -> MemoryDashboard:
    return core.dashboard


@pytest.fixture
def roster(core: Core) -> MemoryWorkers:
    return core.roster


@pytest.fixture
def census(core: Core) -> MemoryCensus:
    return core.census


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
