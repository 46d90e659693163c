"""What every ``TaskCache`` must do, run against each adapter.

A test module subclasses ``CacheContract`` and provides a ``cache`` fixture
(an opened adapter). ``elapse`` lets time pass: real sleeping by default,
since Redis expires keys on its own clock; the memory run overrides it with a
fake clock so the unit tests stay fast.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec
import pytest

from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.ports import TaskCache

Elapse = Callable[[float], Awaitable[None]]

T0 = datetime(2024, 5, 17, 9, 30, 15, 123456, tzinfo=UTC)
SHORT_TTL = timedelta(seconds=0.3)
PAST_SHORT_TTL_S = 0.45


class MakeTask(Protocol):
    def __call__(self, task_id: int | None = None, *, version: int = 1, **changes: Any) -> Task: ...


def task_factory() -> MakeTask:
    """Tasks with fresh, scattered ids (so Cluster spreads them over slots)."""
    ids = itertools.count(random.randrange(1, 1_000_000_000))

    def make(task_id: int | None = None, *, version: int = 1, **changes: Any) -> Task:
        task = Task(
            id=next(ids) if task_id is None else task_id,
            type="reverse",
            input="x",
            status=TaskStatus.PENDING,
            version=version,
            created_at=T0,
            updated_at=T0 + timedelta(seconds=version),
            run_at=T0,
        )
        return msgspec.structs.replace(task, **changes)

    return make


RESULTS = [
    None,
    "olleh",
    "unicode: héllo ✓ 🚀",
    0,
    -(2**53),
    3.25,
    True,
    [],
    [1, "two", 3.5, None, False, [4, [5]]],
    {},
    {"reversed": "x", "nested": {"list": [1, 2, {"deep": None}], "flag": True}, "n": 1.5e-7},
]


class CacheContract:
    @pytest.fixture
    def make_task(self) -> MakeTask:
        return task_factory()

    @pytest.fixture
    def elapse(self) -> Elapse:
        async def sleep(seconds: float) -> None:
            await asyncio.sleep(seconds)

        return sleep

    async def test_unknown_task_is_a_miss(self, cache: TaskCache) -> None:
        assert await cache.get(424242) is None

    @pytest.mark.parametrize("result", RESULTS, ids=repr)
    async def test_round_trips_every_field(self, cache: TaskCache, make_task: MakeTask, result: Any) -> None:
        task = make_task(
            version=7,
            status=TaskStatus.COMPLETED,
            input={"text": "hello", "items": [1, 2.5, None]},
            result=result,
            error="previous attempt: boom",
            attempts=2,
            max_attempts=5,
            run_at=T0 + timedelta(minutes=1),
            lease_until=T0 + timedelta(minutes=2, microseconds=1),
            started_at=T0 + timedelta(seconds=61),
            finished_at=T0 + timedelta(seconds=62, microseconds=999999),
        )
        await cache.put(task, None)

        got = await cache.get(task.id)

        assert got == task
        assert got is not None
        assert type(got.result) is type(result)
        assert got.status is TaskStatus.COMPLETED
        for stamp in (got.created_at, got.updated_at, got.run_at, got.lease_until, got.finished_at):
            assert stamp is not None
            assert stamp.utcoffset() == timedelta(0)

    async def test_newer_version_replaces(self, cache: TaskCache, make_task: MakeTask) -> None:
        pending = make_task(version=1)
        processing = make_task(pending.id, version=2, status=TaskStatus.PROCESSING, attempts=1)
        await cache.put(pending, None)

        await cache.put(processing, None)

        assert await cache.get(pending.id) == processing

    async def test_older_or_equal_version_is_ignored(self, cache: TaskCache, make_task: MakeTask) -> None:
        completed = make_task(version=3, status=TaskStatus.COMPLETED, result="olleh")
        await cache.put(completed, None)

        await cache.put(make_task(completed.id, version=1), None)
        await cache.put(make_task(completed.id, version=2, status=TaskStatus.PROCESSING), None)
        await cache.put(make_task(completed.id, version=3, status=TaskStatus.FAILED, error="x"), None)

        assert await cache.get(completed.id) == completed

    async def test_versions_are_compared_per_task(self, cache: TaskCache, make_task: MakeTask) -> None:
        newer = make_task(version=9)
        other = make_task(version=1)

        await cache.put(newer, None)
        await cache.put(other, None)

        assert await cache.get(newer.id) == newer
        assert await cache.get(other.id) == other

    async def test_ttl_expires_the_entry(self, cache: TaskCache, make_task: MakeTask, elapse: Elapse) -> None:
        task = make_task()
        await cache.put(task, SHORT_TTL)
        assert await cache.get(task.id) == task

        await elapse(PAST_SHORT_TTL_S)

        assert await cache.get(task.id) is None

    async def test_no_ttl_persists_and_replaces_an_earlier_ttl(
        self, cache: TaskCache, make_task: MakeTask, elapse: Elapse
    ) -> None:
        first = make_task(version=1)
        second = make_task(first.id, version=2, status=TaskStatus.PROCESSING)
        await cache.put(first, SHORT_TTL)

        await cache.put(second, None)
        await elapse(PAST_SHORT_TTL_S)

        assert await cache.get(first.id) == second

    async def test_newer_version_sets_its_own_ttl(
        self, cache: TaskCache, make_task: MakeTask, elapse: Elapse
    ) -> None:
        first = make_task(version=1)
        await cache.put(first, None)

        await cache.put(make_task(first.id, version=2, status=TaskStatus.COMPLETED), SHORT_TTL)
        await elapse(PAST_SHORT_TTL_S)

        assert await cache.get(first.id) is None

    async def test_an_expired_entry_no_longer_guards_its_version(
        self, cache: TaskCache, make_task: MakeTask, elapse: Elapse
    ) -> None:
        """The guard lives only as long as the entry: what a read-through writes
        after expiry comes from the database, which is current."""
        newer = make_task(version=5, status=TaskStatus.COMPLETED)
        await cache.put(newer, SHORT_TTL)
        await elapse(PAST_SHORT_TTL_S)

        older = make_task(newer.id, version=4, status=TaskStatus.PROCESSING)
        await cache.put(older, None)

        assert await cache.get(newer.id) == older

    async def test_concurrent_puts_leave_the_highest_version(
        self, cache: TaskCache, make_task: MakeTask
    ) -> None:
        first = make_task()
        versions = list(range(1, 41))
        random.shuffle(versions)

        await asyncio.gather(*(cache.put(make_task(first.id, version=v), None) for v in versions))

        got = await cache.get(first.id)
        assert got is not None
        assert got.version == 40
