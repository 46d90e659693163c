"""The behaviour every adapter of the task table must have, whatever stores the rows.

One adapter (``MemoryTasks``, ``PostgresTasks``) implements all the ports on
the task table: ``TaskStore`` and ``TaskFinder`` (the submit path),
``AttemptStore`` (the worker) and ``TransitionStore`` (the transition writer);
its ``DispatchLog`` is observed through the sweeper's reads, in
``tests/contracts/recovery.py``. Subclass the contracts here next to a
``tasks`` fixture giving an opened adapter over an empty database: the memory
adapter runs them in the unit tests and the PostgreSQL adapter in the
integration tests, so the fake cannot drift from the real thing. Expected
states come from the ``Task`` methods, because the adapter persists
transitions, it does not compute them.

The helpers below (``T0``, ``LEASE``, ``later``, ``new_task``,
``claimed_task``) are shared by the other contracts on the same database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import msgspec
import pytest

from taskcore.model.attempts import MAX_ATTEMPT_LOG, Attempt, AttemptOutcome
from taskcore.model.idempotency import IdempotencyKey
from taskcore.model.query import TaskQuery
from taskcore.model.status import TaskStatus
from taskcore.model.task import NewTask, Task
from taskcore.ports import AttemptStore, DispatchLog, TaskFinder, TaskStore, TransitionStore

T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
LEASE = timedelta(seconds=30)

JSON_VALUES = [
    None,
    "",
    "text with ünïcødé ✓ and 'quotes'",
    0,
    42,
    -7,
    2**53 + 1,
    1.5,
    True,
    False,
    [],
    [1, "two", None, 3.25, [True]],
    {},
    {"nested": {"list": [1, 2], "null": None, "flag": False}},
]

TRANSITIONS: dict[str, Callable[[Task, datetime], Task]] = {
    "complete": lambda task, now: task.complete({"answer": 42}, now),
    "fail with a retry": lambda task, now: task.fail("boom", now, timedelta(seconds=5)),
    "fail for good": lambda task, now: task.fail("boom", now, None),
    "release": lambda task, now: task.release(now),
    "unclaim": lambda task, now: task.unclaim(now),
    "cancel": lambda task, now: task.cancel(now),
}


class Tasks(TaskStore, TaskFinder, AttemptStore, TransitionStore, DispatchLog, Protocol):
    """Every port on the task table, as one adapter implements them."""


def new_task(
    *,
    task_type: str = "echo",
    max_attempts: int = 3,
    run_at: datetime = T0,
    created_at: datetime = T0,
) -> NewTask:
    return NewTask(
        type=task_type,
        input={"n": 1},
        max_attempts=max_attempts,
        run_at=run_at,
        created_at=created_at,
    )


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def claimed_task(tasks: Tasks, **kwargs: Any) -> Task:
    """A new task (``new_task(**kwargs)``), claimed at ``later(1)`` for ``LEASE``."""
    task = await tasks.add(new_task(**kwargs))
    claimed = await tasks.claim(task.id, later(1), LEASE)
    assert claimed is not None
    return claimed


class TaskStoreContract:
    """``TaskStore``: add, add_once, get; and what a stored task keeps."""

    async def test_concurrent_adds_each_get_their_own_task(self, tasks: Tasks) -> None:
        """Concurrent adds may be coalesced into one statement (PostgreSQL):
        each caller still gets the row of its own task, stored as given."""
        news = [
            msgspec.structs.replace(
                new_task(max_attempts=1 + n % 4), input={"n": n}, owner=f"owner-{n % 3}", priority=n % 10
            )
            for n in range(120)
        ]
        added = await asyncio.gather(*(tasks.add(new) for new in news))

        assert len({task.id for task in added}) == len(news)
        for new, task in zip(news, added, strict=True):
            assert task == Task.created(task.id, new)
            assert await tasks.get(task.id) == task

    async def test_add_stores_a_pending_task_with_a_new_id(self, tasks: Tasks) -> None:
        new = new_task(max_attempts=5, run_at=later(10))
        first = await tasks.add(new)
        second = await tasks.add(new)

        assert first.id != second.id
        assert first == Task.created(first.id, new)
        assert first.status is TaskStatus.PENDING
        assert first.version == 1
        assert first.attempts == 0
        assert await tasks.get(first.id) == first

    async def test_get_an_unknown_id_is_none(self, tasks: Tasks) -> None:
        await tasks.add(new_task())
        assert await tasks.get(987654) is None

    async def test_input_of_any_json_shape_round_trips(self, tasks: Tasks) -> None:
        for payload in JSON_VALUES:
            task = await tasks.add(msgspec.structs.replace(new_task(), input=payload))
            stored = await tasks.get(task.id)
            assert stored is not None
            assert stored.input == payload
            assert type(stored.input) is type(payload)

    async def test_timestamps_are_aware_and_exact_to_the_microsecond(self, tasks: Tasks) -> None:
        india = timezone(timedelta(hours=5, minutes=30))
        created = datetime(2025, 6, 7, 8, 9, 10, 999999, tzinfo=india)
        run_at = datetime(2025, 6, 7, 2, 39, 10, 1, tzinfo=UTC)
        task = await tasks.add(new_task(created_at=created, run_at=run_at))
        now = datetime(2025, 6, 7, 3, 0, 0, 654321, tzinfo=timezone(timedelta(hours=-7)))
        claimed = await tasks.claim(task.id, now, timedelta(microseconds=1))
        assert claimed is not None

        stored = await tasks.get(task.id)

        assert stored == claimed
        assert stored is not None
        stamps = [stored.created_at, stored.updated_at, stored.run_at, stored.lease_until, stored.started_at]
        assert all(stamp is not None and stamp.utcoffset() is not None for stamp in stamps)
        assert stored.created_at == created
        assert stored.run_at == run_at
        assert stored.started_at == now
        assert stored.lease_until == now + timedelta(microseconds=1)

    async def test_the_priority_is_stored_and_kept_by_every_change(self, tasks: Tasks) -> None:
        """What the sweeper then publishes again is in the recovery contract
        (``test_an_undispatched_task_keeps_its_priority``)."""
        added = await tasks.add(msgspec.structs.replace(new_task(), priority=7))
        assert added.priority == 7
        assert (await tasks.add(new_task())).priority == 0
        claimed = await tasks.claim(added.id, later(1), LEASE)
        assert claimed is not None
        assert claimed.priority == 7
        retrying = claimed.fail("boom", later(2), timedelta(seconds=5))
        assert await tasks.save(retrying)
        assert await tasks.get(added.id, fresh=True) == retrying

    async def test_the_trace_context_is_stored_by_every_add_and_kept_by_every_change(
        self, tasks: Tasks
    ) -> None:
        """What tracing carries from a submit to each attempt (``ports/tracing.py``):
        stored by each way a task is added, concurrent ones each their own."""

        def traced(n: int) -> NewTask:
            context = f'{{"traceparent":"00-{n + 1:032x}-{n + 1:016x}-01"}}'
            return msgspec.structs.replace(new_task(), trace_context=context)

        carrier = traced(0).trace_context

        added = await tasks.add(traced(0))
        assert added.trace_context == carrier
        assert (await tasks.add(new_task())).trace_context is None
        together = await asyncio.gather(*(tasks.add(traced(n)) for n in range(1, 6)))
        assert [task.trace_context for task in together] == [traced(n).trace_context for n in range(1, 6)]
        unique = await tasks.add_unique(msgspec.structs.replace(traced(7), unique_key="k"))
        assert unique.task.trace_context == traced(7).trace_context
        key = IdempotencyKey(key="k", request_hash="h", expired_before=T0 - timedelta(days=1))
        once = await tasks.add_once(traced(8), key)
        assert once.task.trace_context == traced(8).trace_context
        claimed = await tasks.claim(added.id, later(1), LEASE)
        assert claimed is not None
        assert claimed.trace_context == carrier
        retrying = claimed.fail("boom", later(2), timedelta(seconds=5))
        assert await tasks.save(retrying)
        again = await tasks.claim(added.id, later(10), LEASE)
        assert again is not None
        assert again.trace_context == carrier
        failed = again.fail("boom", later(11), None)
        assert await tasks.save(failed)
        assert await tasks.save(failed.retry(later(12)))
        stored = await tasks.get(added.id, fresh=True)
        assert stored is not None
        assert (stored.status, stored.trace_context) == (TaskStatus.PENDING, carrier)

    async def test_tags_and_metadata_are_stored_by_every_add_and_kept_by_every_change(
        self, tasks: Tasks
    ) -> None:
        """``model/tags.py``: given at submit, never changed; a tag named like
        an SQL keyword or with every allowed sign is a tag like the others."""

        def tagged(n: int) -> NewTask:
            return msgspec.structs.replace(
                new_task(), tags=(f"n:{n}", "NULL", "a-b_c.d:e/f=g"), metadata={"n": n, "deep": {"x": [1]}}
            )

        added = await tasks.add(tagged(0))
        assert (added.tags, added.metadata) == (
            ("n:0", "NULL", "a-b_c.d:e/f=g"),
            {"n": 0, "deep": {"x": [1]}},
        )
        plain = await tasks.add(new_task())
        assert (plain.tags, plain.metadata) == ((), {})
        assert await tasks.get(plain.id, fresh=True) == plain
        together = await asyncio.gather(*(tasks.add(tagged(n)) for n in range(1, 6)))
        assert [(task.tags[0], task.metadata["n"]) for task in together] == [
            (f"n:{n}", n) for n in range(1, 6)
        ]
        unique = await tasks.add_unique(msgspec.structs.replace(tagged(7), unique_key="k"))
        assert (unique.task.tags, unique.task.metadata) == (tagged(7).tags, tagged(7).metadata)
        key = IdempotencyKey(key="k", request_hash="h", expired_before=T0 - timedelta(days=1))
        once = await tasks.add_once(tagged(8), key)
        assert once.task.metadata == tagged(8).metadata
        claimed = await tasks.claim(added.id, later(1), LEASE)
        assert claimed is not None
        failed = claimed.fail("boom", later(2), None)
        assert await tasks.save(failed)
        assert await tasks.save(failed.retry(later(3)))
        stored = await tasks.get(added.id, fresh=True)
        assert stored is not None
        assert (stored.status, stored.tags, stored.metadata) == (
            TaskStatus.PENDING,
            added.tags,
            added.metadata,
        )

    # -- idempotency keys -----------------------------------------------------
    # Forgetting expired keys is the sweeper's: see the recovery contract.

    async def test_add_once_creates_once_per_owner_and_key(self, tasks: Tasks) -> None:
        key = IdempotencyKey(key="k1", request_hash="h1", expired_before=T0 - LEASE)
        mine = msgspec.structs.replace(new_task(), owner="alice")
        first = await tasks.add_once(mine, key)
        again = await tasks.add_once(mine, msgspec.structs.replace(key, request_hash="h2"))
        assert first.created
        assert not again.created
        assert again.task == first.task
        assert again.request_hash == "h1"  # the hash the key was first used with
        theirs = await tasks.add_once(msgspec.structs.replace(new_task(), owner="bob"), key)
        assert theirs.created
        assert theirs.task.id != first.task.id

    async def test_an_expired_key_can_be_used_again(self, tasks: Tasks) -> None:
        key = IdempotencyKey(key="k", request_hash="h", expired_before=T0 - LEASE)
        first = await tasks.add_once(new_task(created_at=T0), key)
        later_key = msgspec.structs.replace(key, expired_before=later(1))
        second = await tasks.add_once(new_task(created_at=later(2)), later_key)
        assert second.created
        assert second.task.id != first.task.id

    async def test_concurrent_add_once_with_one_key_makes_one_task(self, tasks: Tasks) -> None:
        key = IdempotencyKey(key="burst", request_hash="h", expired_before=T0 - LEASE)
        results = await asyncio.gather(*(tasks.add_once(new_task(), key) for _ in range(10)))
        assert sum(r.created for r in results) == 1
        assert len({r.task.id for r in results}) == 1


class TaskFinderContract:
    """``TaskFinder``: listing, filters and keyset pages."""

    async def test_list_by_status_is_newest_first_and_limited(self, tasks: Tasks) -> None:
        oldest = await tasks.add(new_task(created_at=later(1)))
        newest = await tasks.add(new_task(created_at=later(3)))
        tie_first = await tasks.add(new_task(created_at=later(2)))
        tie_second = await tasks.add(new_task(created_at=later(2)))

        listed = await tasks.find(TaskQuery(status=TaskStatus.PENDING, limit=10))

        assert listed == [newest, tie_second, tie_first, oldest]
        assert await tasks.find(TaskQuery(status=TaskStatus.PENDING, limit=2)) == [newest, tie_second]

    async def test_list_by_status_shows_only_that_status(self, tasks: Tasks) -> None:
        pending = await tasks.add(new_task())
        claimed = await claimed_task(tasks)
        done = (await claimed_task(tasks)).complete(None, later(2))
        assert await tasks.save(done) is True

        assert await tasks.find(TaskQuery(status=TaskStatus.PENDING, limit=10)) == [pending]
        assert await tasks.find(TaskQuery(status=TaskStatus.PROCESSING, limit=10)) == [claimed]
        assert await tasks.find(TaskQuery(status=TaskStatus.COMPLETED, limit=10)) == [done]
        assert await tasks.find(TaskQuery(status=TaskStatus.FAILED, limit=10)) == []

    async def test_find_filters_by_owner_status_and_type(self, tasks: Tasks) -> None:
        def owned(owner: str | None, task_type: str) -> NewTask:
            return msgspec.structs.replace(new_task(task_type=task_type), owner=owner)

        a1 = await tasks.add(owned("alice", "echo"))
        a2 = await tasks.add(owned("alice", "other"))
        b1 = await tasks.add(owned("bob", "echo"))
        claimed = await tasks.claim(a1.id, later(1), LEASE)
        assert claimed is not None

        def ids(found: list[Task]) -> set[int]:
            return {t.id for t in found}

        assert ids(await tasks.find(TaskQuery(owner="alice"))) == {a1.id, a2.id}
        assert ids(await tasks.find(TaskQuery())) == {a1.id, a2.id, b1.id}
        assert ids(await tasks.find(TaskQuery(type="echo"))) == {a1.id, b1.id}
        assert ids(await tasks.find(TaskQuery(owner="alice", status=TaskStatus.PENDING))) == {a2.id}
        assert ids(await tasks.find(TaskQuery(owner="carol"))) == set()
        assert (await tasks.get(a2.id, fresh=True)).owner == "alice"  # type: ignore[union-attr]

    async def test_the_queue_is_stored_and_filters_a_listing(self, tasks: Tasks) -> None:
        mail = await tasks.add(msgspec.structs.replace(new_task(), queue="emails"))
        plain = await tasks.add(new_task())
        many = await asyncio.gather(
            *(tasks.add(msgspec.structs.replace(new_task(), queue=f"q{n % 2}")) for n in range(6))
        )  # coalesced into one INSERT on PostgreSQL
        assert (mail.queue, plain.queue) == ("emails", "default")
        assert [task.queue for task in many] == ["q0", "q1"] * 3
        assert await tasks.get(mail.id, fresh=True) == mail
        assert [t.id for t in await tasks.find(TaskQuery(queue="emails"))] == [mail.id]
        assert {t.id for t in await tasks.find(TaskQuery(queue="q1"))} == {t.id for t in many[1::2]}
        claimed = await tasks.claim(mail.id, later(1), LEASE)
        assert claimed is not None
        assert claimed.queue == "emails"

    async def test_find_filters_by_tags_all_of_them_and_pages_by_keyset(self, tasks: Tasks) -> None:
        def tagged(n: int, *tags: str) -> NewTask:
            return msgspec.structs.replace(new_task(created_at=later(n)), tags=tags)

        a = await tasks.add(tagged(1, "red", "big"))
        b = await tasks.add(tagged(2, "red"))
        c = await tasks.add(msgspec.structs.replace(tagged(3, "big", "red"), queue="emails"))
        await tasks.add(tagged(4, "blue"))
        await tasks.add(tagged(5))

        def ids(found: list[Task]) -> list[int]:
            return [t.id for t in found]

        assert ids(await tasks.find(TaskQuery(tags=("red",)))) == [c.id, b.id, a.id]
        assert ids(await tasks.find(TaskQuery(tags=("red", "big")))) == [c.id, a.id]
        assert ids(await tasks.find(TaskQuery(tags=("red", "green")))) == []
        assert ids(await tasks.find(TaskQuery(tags=("re",)))) == []  # whole tags, not prefixes
        assert ids(await tasks.find(TaskQuery(tags=("red",), queue="emails"))) == [c.id]
        assert ids(await tasks.find(TaskQuery(tags=("red",), status=TaskStatus.PENDING, type="echo"))) == [
            c.id,
            b.id,
            a.id,
        ]
        first = await tasks.find(TaskQuery(tags=("red",), limit=2))
        assert ids(first) == [c.id, b.id]
        rest = await tasks.find(
            TaskQuery(tags=("red",), limit=2, before=(first[-1].created_at, first[-1].id))
        )
        assert ids(rest) == [a.id]

    async def test_find_filters_by_any_of_several_statuses_and_by_creation_time(self, tasks: Tasks) -> None:
        """What a bulk action selects: statuses it applies to, a window of creation."""
        early = await tasks.add(new_task(created_at=later(1)))
        middle = await claimed_task(tasks, created_at=later(2))
        late = await tasks.add(new_task(created_at=later(3)))
        done = (await claimed_task(tasks, created_at=later(2))).complete(None, later(4))
        assert await tasks.save(done)

        def ids(found: list[Task]) -> list[int]:
            return [t.id for t in found]

        active = frozenset({TaskStatus.PENDING, TaskStatus.PROCESSING})
        assert ids(await tasks.find(TaskQuery(statuses=active))) == [late.id, middle.id, early.id]
        assert ids(await tasks.find(TaskQuery(statuses=frozenset()))) == []
        assert ids(await tasks.find(TaskQuery(created_after=later(1)))) == [late.id, done.id, middle.id]
        assert ids(await tasks.find(TaskQuery(created_before=later(3)))) == [done.id, middle.id, early.id]
        window = TaskQuery(statuses=active, created_after=later(1), created_before=later(3))
        assert ids(await tasks.find(window)) == [middle.id]
        paused = TaskQuery(status=TaskStatus.PENDING, statuses=active)  # both hold
        assert ids(await tasks.find(paused)) == [late.id, early.id]

    async def test_a_fresh_find_sees_the_latest_writes(self, tasks: Tasks) -> None:
        """``fresh`` reads the primary, where a bulk action's next batch must look."""
        task = await tasks.add(new_task())
        cancelled = task.cancel(later(1))
        assert await tasks.save(cancelled)
        assert await tasks.find(TaskQuery(status=TaskStatus.CANCELLED), fresh=True) == [cancelled]
        assert await tasks.find(TaskQuery(status=TaskStatus.PENDING), fresh=True) == []

    async def test_keyset_pages_neither_repeat_nor_skip(self, tasks: Tasks) -> None:
        created = [await tasks.add(new_task(created_at=later(i // 3))) for i in range(10)]  # ties too
        seen: list[int] = []
        before = None
        while True:
            page = await tasks.find(TaskQuery(limit=3, before=before))
            if not page:
                break
            seen += [t.id for t in page]
            before = (page[-1].created_at, page[-1].id)
            # a task inserted meanwhile is newer than every page: it never shows up late
            await tasks.add(new_task(created_at=later(100)))
        expected = sorted(created, key=lambda t: (t.created_at, t.id), reverse=True)
        assert seen == [t.id for t in expected]


class AttemptStoreContract:
    """``AttemptStore``: claim and renew_lease."""

    async def test_claim_starts_an_attempt(self, tasks: Tasks) -> None:
        task = await tasks.add(new_task())
        now = later(1)

        claimed = await tasks.claim(task.id, now, LEASE)

        assert claimed == task.claim(now, LEASE)
        assert claimed is not None
        assert claimed.status is TaskStatus.PROCESSING
        assert claimed.attempts == 1
        assert claimed.lease_until == now + LEASE
        assert claimed.started_at == now
        assert claimed.version == 2
        assert await tasks.get(task.id) == claimed

    async def test_each_claim_and_its_end_are_logged_the_last_twenty_kept(self, tasks: Tasks) -> None:
        task = await tasks.add(new_task(max_attempts=30))
        for n in range(1, 23):  # 21 failures and a success; each claim by the store itself
            claimed = await tasks.claim(task.id, later(n), LEASE)
            assert claimed is not None
            assert claimed.attempt_log[-1] == Attempt(number=n, claimed_at=later(n))
            task = (
                claimed.complete("done", later(n + 0.5))
                if n == 22
                else claimed.fail(f"boom {n}", later(n + 0.5), timedelta(0))
            )
            assert await tasks.save(task) is True

        stored = await tasks.get(task.id)
        assert stored == task
        assert stored is not None
        assert len(stored.attempt_log) == MAX_ATTEMPT_LOG
        assert [a.number for a in stored.attempt_log] == list(range(3, 23))
        assert stored.attempt_log[0] == Attempt(
            number=3, claimed_at=later(3), ended_at=later(3.5), outcome=AttemptOutcome.FAILED, error="boom 3"
        )
        assert stored.attempt_log[-1].outcome is AttemptOutcome.COMPLETED

    async def test_a_second_claim_is_a_duplicate_and_changes_nothing(self, tasks: Tasks) -> None:
        claimed = await claimed_task(tasks)

        assert await tasks.claim(claimed.id, later(2), LEASE) is None
        assert await tasks.get(claimed.id) == claimed

    async def test_claim_waits_until_the_task_is_due(self, tasks: Tasks) -> None:
        task = await tasks.add(new_task(run_at=later(60)))

        assert await tasks.claim(task.id, later(59), LEASE) is None
        assert await tasks.get(task.id) == task
        assert await tasks.claim(task.id, later(60), LEASE) == task.claim(later(60), LEASE)

    async def test_claim_of_an_unknown_id_is_none(self, tasks: Tasks) -> None:
        assert await tasks.claim(987654, later(1), LEASE) is None

    async def test_concurrent_claims_have_exactly_one_winner(self, tasks: Tasks) -> None:
        task = await tasks.add(new_task())

        outcomes = await asyncio.gather(*(tasks.claim(task.id, later(1), LEASE) for _ in range(8)))

        winners = [claimed for claimed in outcomes if claimed is not None]
        assert winners == [task.claim(later(1), LEASE)]
        assert await tasks.get(task.id) == winners[0]

    async def test_concurrent_claims_of_many_tasks_each_get_their_own(self, tasks: Tasks) -> None:
        """Concurrent claims may be coalesced into one statement (PostgreSQL)."""
        added = [await tasks.add(new_task()) for _ in range(20)]
        not_due = await tasks.add(new_task(run_at=later(60)))
        ids = [task.id for task in added] + [added[0].id, not_due.id, 987654]

        outcomes = await asyncio.gather(*(tasks.claim(task_id, later(1), LEASE) for task_id in ids))

        assert outcomes[:20] == [task.claim(later(1), LEASE) for task in added]
        assert outcomes[20:] == [None, None, None]  # a duplicate, one not due, one unknown
        assert await tasks.get(not_due.id) == not_due

    async def test_a_claim_alone_is_stored_as_such(self, tasks: Tasks) -> None:
        task = await tasks.add(new_task())
        claimed = await tasks.claim(task.id, later(1), LEASE, alone=True)
        assert claimed == task.claim(later(1), LEASE, alone=True)
        assert claimed is not None
        assert claimed.alone
        assert await tasks.get(task.id, fresh=True) == claimed

    async def test_a_suspect_task_is_claimed_only_alone(self, tasks: Tasks) -> None:
        """A worker died while it ran beside others: only a claim that runs it
        alone gets it, also when both come in one batch."""
        claimed = await claimed_task(tasks)
        suspect = claimed.release(later(40))
        assert suspect.suspect
        assert await tasks.save(suspect)
        assert await tasks.get(suspect.id, fresh=True) == suspect
        assert await tasks.claim(suspect.id, later(41), LEASE) is None
        outcomes = await asyncio.gather(
            tasks.claim(suspect.id, later(41), LEASE), tasks.claim(suspect.id, later(41), LEASE, alone=True)
        )
        assert outcomes == [None, suspect.claim(later(41), LEASE, alone=True)]

    async def test_renew_lease_extends_only_the_current_attempt(self, tasks: Tasks) -> None:
        claimed = await claimed_task(tasks)
        assert await tasks.renew_lease(claimed.id, claimed.version, later(100))
        stored = await tasks.get(claimed.id, fresh=True)
        assert stored is not None
        assert stored.lease_until == later(100)
        assert stored.version == claimed.version  # a heartbeat is not a transition
        assert not await tasks.renew_lease(claimed.id, claimed.version - 1, later(200))
        assert await tasks.save(claimed.cancel(later(2)))
        assert not await tasks.renew_lease(claimed.id, claimed.version, later(300))
        assert not await tasks.renew_lease(10**12, 1, later(300))


class TransitionStoreContract:
    """``TransitionStore``: save lands only on the previous version; every transition round-trips."""

    async def test_concurrent_saves_each_land_or_lose_on_their_own(self, tasks: Tasks) -> None:
        """Concurrent saves may be coalesced into one statement (PostgreSQL):
        each still lands only on its previous version, and two transitions of
        one task in a row both land, in order."""
        claimed = [await claimed_task(tasks) for _ in range(12)]
        done = [task.complete({"n": task.id}, later(2)) for task in claimed[:8]]
        failed = [task.fail("boom", later(2), None) for task in claimed[8:10]]
        stale = claimed[10].complete("late", later(2))
        await tasks.save(claimed[10].release(later(2)))  # someone else moved it on first
        cancelled = claimed[11].cancel(later(2))
        retried = cancelled.retry(later(3))

        outcomes = await asyncio.gather(
            *(tasks.save(task) for task in [*done, *failed, stale, cancelled, retried])
        )

        assert outcomes == [True] * 10 + [False, True, True]
        for task in [*done, *failed, retried]:
            assert await tasks.get(task.id) == task

    async def test_save_of_the_next_version_lands(self, tasks: Tasks) -> None:
        claimed = await claimed_task(tasks)
        done = claimed.complete("ok", later(2))

        assert await tasks.save(done) is True
        assert await tasks.get(claimed.id) == done

    async def test_save_of_a_stale_version_is_refused_and_changes_nothing(self, tasks: Tasks) -> None:
        task = await tasks.add(new_task())
        cancelled_from_pending = task.cancel(later(1))
        claimed = await tasks.claim(task.id, later(1), LEASE)
        assert claimed is not None

        assert await tasks.save(cancelled_from_pending) is False
        assert await tasks.save(claimed) is False  # already stored: its version is not next
        assert await tasks.get(task.id) == claimed

        done = claimed.complete("first", later(2))
        assert await tasks.save(done) is True
        assert await tasks.save(claimed.fail("late writer", later(3), None)) is False
        assert await tasks.get(task.id) == done

    async def test_save_of_an_unknown_task_is_refused(self, tasks: Tasks) -> None:
        claimed = await claimed_task(tasks)
        ghost = Task(
            id=987654,
            type=claimed.type,
            input=claimed.input,
            status=TaskStatus.PENDING,
            created_at=T0,
            updated_at=T0,
            run_at=T0,
        ).cancel(later(1))

        assert await tasks.save(ghost) is False
        assert await tasks.get(987654) is None

    async def test_concurrent_saves_from_one_version_have_exactly_one_winner(self, tasks: Tasks) -> None:
        claimed = await claimed_task(tasks)
        rivals = [claimed.complete(n, later(2)) for n in range(4)] + [claimed.cancel(later(2))]

        outcomes = await asyncio.gather(*(tasks.save(rival) for rival in rivals))

        assert sorted(outcomes) == [False] * 4 + [True]
        assert await tasks.get(claimed.id) == rivals[outcomes.index(True)]

    @pytest.mark.parametrize("transition", list(TRANSITIONS))
    async def test_a_transition_of_a_claimed_task_round_trips(self, tasks: Tasks, transition: str) -> None:
        claimed = await claimed_task(tasks)
        changed = TRANSITIONS[transition](claimed, later(2))

        assert await tasks.save(changed) is True
        assert await tasks.get(claimed.id) == changed

    async def test_a_pending_task_can_be_cancelled_and_is_then_not_claimable(self, tasks: Tasks) -> None:
        task = await tasks.add(new_task())
        cancelled = task.cancel(later(1))

        assert await tasks.save(cancelled) is True
        assert await tasks.claim(task.id, later(2), LEASE) is None
        assert await tasks.get(task.id) == cancelled

    async def test_a_failed_retry_is_claimable_again_once_due(self, tasks: Tasks) -> None:
        claimed = await claimed_task(tasks)
        retry = claimed.fail("boom", later(2), timedelta(seconds=10))
        assert await tasks.save(retry) is True

        assert await tasks.claim(claimed.id, later(11), LEASE) is None
        second = await tasks.claim(claimed.id, later(12), LEASE)

        assert second == retry.claim(later(12), LEASE)
        assert second is not None
        assert second.attempts == 2

    @pytest.mark.parametrize("ending", ["fail for good", "cancel"])
    async def test_a_retried_task_round_trips_and_runs_again(self, tasks: Tasks, ending: str) -> None:
        claimed = await claimed_task(tasks)
        ended = TRANSITIONS[ending](claimed, later(2))
        assert await tasks.save(ended) is True
        retried = ended.retry(later(3))

        assert await tasks.save(retried) is True
        assert await tasks.get(claimed.id) == retried
        assert await tasks.claim(claimed.id, later(3), LEASE) == retried.claim(later(3), LEASE)

    @pytest.mark.parametrize("result", JSON_VALUES, ids=repr)
    async def test_a_result_of_any_json_shape_round_trips(self, tasks: Tasks, result: Any) -> None:
        claimed = await claimed_task(tasks)
        done = claimed.complete(result, later(2))

        assert await tasks.save(done) is True
        stored = await tasks.get(claimed.id)
        assert stored is not None
        assert stored.result == result
        assert type(stored.result) is type(result)
