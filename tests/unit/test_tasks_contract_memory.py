"""The task-table contracts (``tests/contracts/tasks.py``, ``progress.py``) on ``MemoryTasks``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from taskcore.adapters.memory import (
    MemoryDashboard,
    MemoryDatabase,
    MemoryRecovery,
    MemoryTasks,
    MemoryWorkers,
)
from taskcore.errors import RepositoryUnavailable
from taskcore.model.query import TaskQuery
from tests.contracts.progress import ProgressContract
from tests.contracts.tasks import (
    LEASE,
    AttemptStoreContract,
    TaskFinderContract,
    TaskStoreContract,
    TransitionStoreContract,
    later,
    new_task,
)
from tests.contracts.unique import UniqueKeyContract


@pytest.fixture
def db() -> MemoryDatabase:
    return MemoryDatabase()


@pytest.fixture
def tasks(db: MemoryDatabase) -> MemoryTasks:
    return MemoryTasks(db)


class TestMemoryTaskStore(TaskStoreContract):
    pass


class TestMemoryTaskFinder(TaskFinderContract):
    pass


class TestMemoryAttemptStore(AttemptStoreContract):
    pass


class TestMemoryTransitionStore(TransitionStoreContract):
    pass


class TestMemoryUniqueKeys(UniqueKeyContract):
    pass


class TestMemoryProgress(ProgressContract):
    pass


async def test_the_views_share_one_database_and_fail_with_it(db: MemoryDatabase, tasks: MemoryTasks) -> None:
    """What ``available = False`` promises: every view fails like an unreachable database."""
    task = await tasks.add(new_task())
    assert await MemoryTasks(db).get(task.id) == task  # another view, the same rows
    recovery, dashboard, roster = MemoryRecovery(db), MemoryDashboard(db), MemoryWorkers(db)

    db.available = False

    calls: list[Callable[[], Awaitable[object]]] = [
        db.ping,
        lambda: tasks.add(new_task()),
        lambda: tasks.get(task.id),
        lambda: tasks.find(TaskQuery()),
        lambda: tasks.claim(task.id, later(1), LEASE),
        lambda: tasks.mark_dispatched([(task.id, later(1))]),
        lambda: recovery.lapsed(later(60), 10),
        lambda: recovery.forget_idempotency_keys(later(60), 10),
        lambda: dashboard.status_counts(None),
        lambda: roster.workers_seen(later(0)),
    ]
    for call in calls:
        with pytest.raises(RepositoryUnavailable):
            await call()
    db.available = True
    assert await tasks.get(task.id) == task
