"""``Transitions``, the one writer of task transitions, on the memory adapters.

A transition is persisted with the version check, then cached, announced to
waiting readers (the change feed) and, when the task is PENDING again, its
wake-up is published. What the test reads is the adapters' state: the task
table and its confirmations (``db.tasks``, ``db.dispatched_at``), the cache's
entries, the feed's ``announced`` list and the queue's counters.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskcore import RepositoryUnavailable, Task, TaskStatus
from taskcore.adapters.memory import MemoryCache
from taskcore.model.changes import TaskChange
from taskcore.model.task import NewTask
from tests.core import Core, ManualClock, build_core


@pytest.fixture
def core(clock: ManualClock) -> Core:
    # A cache whose clock stands still, so the TTLs read back exactly as written.
    return build_core(clock=clock, cache=MemoryCache(monotonic=lambda: 0.0))


async def stored(core: Core, *, delay_s: float = 0) -> Task:
    """A PENDING task in the table only: no wake-up, no cache entry yet."""
    now = core.clock.now()
    return await core.tasks.add(
        NewTask(
            type="reverse",
            input="abc",
            max_attempts=3,
            run_at=now + timedelta(seconds=delay_s),
            created_at=now,
        )
    )


async def claimed(core: Core, task: Task) -> Task:
    """Claim ``task`` as a worker does (the claim is its own UPDATE)."""
    taken = await core.tasks.claim(task.id, core.clock.now(), core.config.lease)
    assert taken is not None
    return taken


async def announced(core: Core) -> list[TaskChange]:
    """What reached the change feed, once the announcer sent what it holds."""
    await core.announcer.aclose()
    return core.changes.announced


def cached(core: Core, task_id: int) -> Task | None:
    entry = core.cache.entries.get(task_id)
    return None if entry is None else entry[0]


# -- record ---------------------------------------------------------------------------


async def test_record_persists_caches_and_announces_a_final_state_without_a_wake_up(
    core: Core, clock: ManualClock
) -> None:
    task = await stored(core)
    clock.advance(2)
    cancelled = task.cancel(clock.now())

    assert await core.transitions.record(cancelled)

    assert core.db.tasks[task.id] == cancelled
    assert cached(core, task.id) == cancelled
    assert core.cache.ttl(task.id) == core.config.finished_ttl_s
    assert await announced(core) == [TaskChange(task.id, 2, TaskStatus.CANCELLED)]
    assert (core.queue.published, core.queue.depth, core.queue.delayed) == (0, 0, 0)


async def test_record_of_an_active_state_caches_it_with_the_active_ttl(core: Core) -> None:
    running = await claimed(core, await stored(core))
    core.cache.entries.clear()
    # A lapsed lease released by the sweeper: PENDING again, so it also gets a wake-up.
    released = running.release(core.clock.now())

    assert await core.transitions.record(released)

    assert cached(core, running.id) == released
    assert core.cache.ttl(running.id) == core.config.active_ttl_s


async def test_record_of_a_pending_state_publishes_its_wake_up_at_its_run_at(
    core: Core, clock: ManualClock
) -> None:
    running = await claimed(core, await stored(core))
    retry = running.fail("boom", clock.now(), timedelta(seconds=5))
    assert retry.status is TaskStatus.PENDING

    assert await core.transitions.record(retry)

    assert core.db.tasks[retry.id] == retry
    assert cached(core, retry.id) == retry
    assert await announced(core) == [TaskChange(retry.id, 3, TaskStatus.PENDING)]
    assert core.queue.published == 1
    await core.transitions.catch_up()
    assert core.db.dispatched_at == {retry.id: clock.now()}  # the broker took it
    assert (core.queue.depth, core.queue.delayed) == (0, 1)  # but holds it until its retry delay
    clock.advance(5)
    assert core.queue.release_due() == 1
    assert core.queue.depth == 1


async def test_record_without_publish_writes_the_transition_but_no_wake_up(core: Core) -> None:
    running = await claimed(core, await stored(core))
    unclaimed = running.unclaim(core.clock.now())

    assert await core.transitions.record(unclaimed, publish=False)

    assert core.db.tasks[running.id] == unclaimed
    assert cached(core, running.id) == unclaimed
    assert await announced(core) == [TaskChange(running.id, 3, TaskStatus.PENDING)]
    assert (core.queue.published, core.queue.depth, core.queue.delayed) == (0, 0, 0)
    await core.aclose()
    assert core.db.dispatched_at == {}


async def test_a_record_that_loses_the_version_race_changes_nothing_else(
    core: Core, clock: ManualClock
) -> None:
    task = await stored(core)
    running = await claimed(core, task)
    # While the handler runs, the task is cancelled (version 3) ...
    cancel = running.cancel(clock.now())
    assert await core.transitions.record(cancel)
    before = await announced(core)
    core.cache.entries.clear()  # so a stray write would show
    # ... and the worker's retry verdict, built on version 2, comes too late.
    late = running.fail("boom", clock.now(), timedelta(0))
    assert late.status is TaskStatus.PENDING

    assert await core.transitions.record(late) is False

    assert core.db.tasks[task.id] == cancel
    assert core.cache.entries == {}
    assert core.transitions.cache.unwritten == 0
    assert await announced(core) == before == [TaskChange(task.id, 3, TaskStatus.CANCELLED)]
    assert (core.queue.published, core.queue.depth, core.queue.delayed) == (0, 0, 0)


async def test_a_record_the_database_refuses_raises_and_changes_nothing(
    core: Core, clock: ManualClock
) -> None:
    task = await stored(core)
    core.db.available = False

    with pytest.raises(RepositoryUnavailable):
        await core.transitions.record(task.cancel(clock.now()))

    assert core.db.tasks[task.id] == task
    assert core.cache.entries == {}
    assert await announced(core) == []
    assert core.queue.published == 0


async def test_a_wake_up_the_broker_refuses_leaves_the_row_unconfirmed(core: Core) -> None:
    running = await claimed(core, await stored(core))
    released = running.release(core.clock.now())
    core.queue.available = False

    assert await core.transitions.record(released)  # stored all the same: the sweeper publishes it

    assert core.db.tasks[running.id] == released
    assert cached(core, running.id) == released
    assert core.queue.published == 0
    await core.aclose()
    assert running.id not in core.db.dispatched_at


# -- created, written, republish ---------------------------------------------------------


async def test_created_publishes_and_caches_but_announces_nothing(core: Core) -> None:
    task = await stored(core)

    await core.transitions.created(task)

    assert cached(core, task.id) == task
    assert core.cache.ttl(task.id) == core.config.active_ttl_s
    assert (core.queue.published, core.queue.depth) == (1, 1)
    assert await announced(core) == []
    assert core.db.tasks[task.id] == task  # nothing written: the row is already there
    await core.aclose()
    assert core.db.dispatched_at == {task.id: core.clock.now()}


async def test_created_with_a_delay_publishes_a_delayed_wake_up(core: Core, clock: ManualClock) -> None:
    task = await stored(core, delay_s=30)

    await core.transitions.created(task)

    assert (core.queue.published, core.queue.depth, core.queue.delayed) == (1, 0, 1)
    clock.advance(29)
    assert core.queue.release_due() == 0
    clock.advance(1)
    assert core.queue.release_due() == 1


async def test_created_still_caches_when_the_broker_is_down(core: Core) -> None:
    task = await stored(core)
    core.queue.available = False

    await core.transitions.created(task)

    assert cached(core, task.id) == task
    assert core.queue.published == 0
    await core.aclose()
    assert core.db.dispatched_at == {}


async def test_written_caches_and_announces_what_is_already_stored(core: Core) -> None:
    running = await claimed(core, await stored(core))

    await core.transitions.written(running)

    assert cached(core, running.id) == running
    assert await announced(core) == [TaskChange(running.id, 2, TaskStatus.PROCESSING)]
    assert core.db.tasks[running.id] == running
    assert core.queue.published == 0


async def test_written_never_takes_the_cache_back_to_an_older_state(core: Core) -> None:
    task = await stored(core)
    running = await claimed(core, task)
    await core.transitions.written(running)

    await core.transitions.written(task)  # a stale read, version 1

    assert cached(core, task.id) == running


async def test_republish_sends_the_wake_up_again_and_says_when_the_broker_refused(core: Core) -> None:
    task = await stored(core)

    assert await core.transitions.republish(task) is True
    core.queue.available = False
    assert await core.transitions.republish(task) is False

    assert core.queue.published == 1
    core.queue.available = True
    assert core.queue.depth == 1
    assert core.db.tasks[task.id] == task  # the row does not change
    assert core.cache.entries == {}
    assert await announced(core) == []
    await core.aclose()
    assert core.db.dispatched_at == {task.id: core.clock.now()}


# -- catch_up ---------------------------------------------------------------------------


async def test_catch_up_writes_the_buffered_confirmations(clock: ManualClock) -> None:
    core = build_core(clock=clock, flush_delay_s=3600)  # the background flush is far off
    task = await stored(core)
    await core.transitions.created(task)
    assert core.db.dispatched_at == {}

    await core.transitions.catch_up()

    assert core.db.dispatched_at == {task.id: clock.now()}
    await core.aclose()


async def test_catch_up_replays_the_cache_writes_missed_while_the_cache_was_down(
    core: Core, clock: ManualClock
) -> None:
    running = await claimed(core, await stored(core))
    await core.transitions.written(running)
    core.cache.available = False
    done = running.complete("cba", clock.now())

    assert await core.transitions.record(done)  # the database has it; the cache missed it

    assert core.db.tasks[running.id] == done
    assert core.transitions.cache.unwritten == 1
    core.cache.available = True
    assert cached(core, running.id) == running  # without the replay, it would read as still running

    await core.transitions.catch_up()

    assert cached(core, running.id) == done
    assert core.cache.ttl(running.id) == core.config.finished_ttl_s
    assert core.transitions.cache.unwritten == 0
    await core.transitions.catch_up()  # nothing left: a second one writes nothing
    assert cached(core, running.id) == done


async def test_catch_up_while_the_cache_is_still_down_keeps_the_missed_writes(
    core: Core, clock: ManualClock
) -> None:
    task = await stored(core)
    core.cache.available = False
    cancelled = task.cancel(clock.now())
    assert await core.transitions.record(cancelled)

    await core.transitions.catch_up()

    assert core.transitions.cache.unwritten == 1
    core.cache.available = True
    await core.transitions.catch_up()
    assert cached(core, task.id) == cancelled
    assert core.transitions.cache.unwritten == 0
