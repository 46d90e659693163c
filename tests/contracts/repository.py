"""The behaviour every ``TaskRepository`` must have, whatever stores the rows.

Subclass ``RepositoryContract`` and provide a ``repository`` fixture giving an
opened, empty adapter: the memory adapter runs it in the unit tests and the
PostgreSQL adapter in the integration tests, so the fake cannot drift from
the real thing. Expected states come from the ``Task`` methods, because the
repository persists transitions, it does not compute them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from taskcore.idempotency import IdempotencyKey
from taskcore.ports import TaskRepository
from taskcore.presence import WorkerReport
from taskcore.query import TaskQuery
from taskcore.status import TaskStatus
from taskcore.task import NewTask, Task

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
    "release": lambda task, now: task.release(now, "lease lapsed"),
    "hand back": lambda task, now: task.hand_back(now),
    "cancel": lambda task, now: task.cancel(now),
}


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


class RepositoryContract:
    async def _claimed(self, repository: TaskRepository, **kwargs: Any) -> Task:
        task = await repository.add(new_task(**kwargs))
        claimed = await repository.claim(task.id, later(1), LEASE)
        assert claimed is not None
        return claimed

    # add / get

    async def test_concurrent_adds_each_get_their_own_task(self, repository: TaskRepository) -> None:
        """Concurrent adds may be coalesced into one statement (PostgreSQL):
        each caller still gets the row of its own task, stored as given."""
        news = [
            msgspec.structs.replace(
                new_task(max_attempts=1 + n % 4), input={"n": n}, owner=f"owner-{n % 3}", priority=n % 10
            )
            for n in range(120)
        ]
        added = await asyncio.gather(*(repository.add(new) for new in news))

        assert len({task.id for task in added}) == len(news)
        for new, task in zip(news, added, strict=True):
            assert task == Task.created(task.id, new)
            assert await repository.get(task.id) == task

    async def test_add_stores_a_pending_task_with_a_new_id(self, repository: TaskRepository) -> None:
        new = new_task(max_attempts=5, run_at=later(10))
        first = await repository.add(new)
        second = await repository.add(new)

        assert first.id != second.id
        assert first == Task.created(first.id, new)
        assert first.status is TaskStatus.PENDING
        assert first.version == 1
        assert first.attempts == 0
        assert await repository.get(first.id) == first

    async def test_get_an_unknown_id_is_none(self, repository: TaskRepository) -> None:
        await repository.add(new_task())
        assert await repository.get(987654) is None

    async def test_input_of_any_json_shape_round_trips(self, repository: TaskRepository) -> None:
        for payload in JSON_VALUES:
            task = await repository.add(msgspec.structs.replace(new_task(), input=payload))
            stored = await repository.get(task.id)
            assert stored is not None
            assert stored.input == payload
            assert type(stored.input) is type(payload)

    # claim

    async def test_claim_starts_an_attempt(self, repository: TaskRepository) -> None:
        task = await repository.add(new_task())
        now = later(1)

        claimed = await repository.claim(task.id, now, LEASE)

        assert claimed == task.claim(now, LEASE)
        assert claimed is not None
        assert claimed.status is TaskStatus.PROCESSING
        assert claimed.attempts == 1
        assert claimed.lease_until == now + LEASE
        assert claimed.started_at == now
        assert claimed.version == 2
        assert await repository.get(task.id) == claimed

    async def test_a_second_claim_is_a_duplicate_and_changes_nothing(
        self, repository: TaskRepository
    ) -> None:
        claimed = await self._claimed(repository)

        assert await repository.claim(claimed.id, later(2), LEASE) is None
        assert await repository.get(claimed.id) == claimed

    async def test_claim_waits_until_the_task_is_due(self, repository: TaskRepository) -> None:
        task = await repository.add(new_task(run_at=later(60)))

        assert await repository.claim(task.id, later(59), LEASE) is None
        assert await repository.get(task.id) == task
        assert await repository.claim(task.id, later(60), LEASE) == task.claim(later(60), LEASE)

    async def test_claim_of_an_unknown_id_is_none(self, repository: TaskRepository) -> None:
        assert await repository.claim(987654, later(1), LEASE) is None

    async def test_concurrent_claims_have_exactly_one_winner(self, repository: TaskRepository) -> None:
        task = await repository.add(new_task())

        outcomes = await asyncio.gather(*(repository.claim(task.id, later(1), LEASE) for _ in range(8)))

        winners = [claimed for claimed in outcomes if claimed is not None]
        assert winners == [task.claim(later(1), LEASE)]
        assert await repository.get(task.id) == winners[0]

    async def test_concurrent_claims_of_many_tasks_each_get_their_own(
        self, repository: TaskRepository
    ) -> None:
        """Concurrent claims may be coalesced into one statement (PostgreSQL)."""
        tasks = [await repository.add(new_task()) for _ in range(20)]
        not_due = await repository.add(new_task(run_at=later(60)))
        ids = [task.id for task in tasks] + [tasks[0].id, not_due.id, 987654]

        outcomes = await asyncio.gather(*(repository.claim(task_id, later(1), LEASE) for task_id in ids))

        assert outcomes[:20] == [task.claim(later(1), LEASE) for task in tasks]
        assert outcomes[20:] == [None, None, None]  # a duplicate, one not due, one unknown
        assert await repository.get(not_due.id) == not_due

    # save

    async def test_concurrent_saves_each_land_or_lose_on_their_own(self, repository: TaskRepository) -> None:
        """Concurrent saves may be coalesced into one statement (PostgreSQL):
        each still lands only on its previous version, and two transitions of
        one task in a row both land, in order."""
        claimed = [await self._claimed(repository) for _ in range(12)]
        done = [task.complete({"n": task.id}, later(2)) for task in claimed[:8]]
        failed = [task.fail("boom", later(2), None) for task in claimed[8:10]]
        stale = claimed[10].complete("late", later(2))
        await repository.save(claimed[10].release(later(2), "lapsed"))  # someone else moved it on first
        cancelled = claimed[11].cancel(later(2))
        requeued = cancelled.requeue(later(3))

        outcomes = await asyncio.gather(
            *(repository.save(task) for task in [*done, *failed, stale, cancelled, requeued])
        )

        assert outcomes == [True] * 10 + [False, True, True]
        for task in [*done, *failed, requeued]:
            assert await repository.get(task.id) == task

    async def test_save_of_the_next_version_lands(self, repository: TaskRepository) -> None:
        claimed = await self._claimed(repository)
        done = claimed.complete("ok", later(2))

        assert await repository.save(done) is True
        assert await repository.get(claimed.id) == done

    async def test_save_of_a_stale_version_is_refused_and_changes_nothing(
        self, repository: TaskRepository
    ) -> None:
        task = await repository.add(new_task())
        cancelled_from_pending = task.cancel(later(1))
        claimed = await repository.claim(task.id, later(1), LEASE)
        assert claimed is not None

        assert await repository.save(cancelled_from_pending) is False
        assert await repository.save(claimed) is False  # already stored: its version is not next
        assert await repository.get(task.id) == claimed

        done = claimed.complete("first", later(2))
        assert await repository.save(done) is True
        assert await repository.save(claimed.fail("late writer", later(3), None)) is False
        assert await repository.get(task.id) == done

    async def test_save_of_an_unknown_task_is_refused(self, repository: TaskRepository) -> None:
        claimed = await self._claimed(repository)
        ghost = Task(
            id=987654,
            type=claimed.type,
            input=claimed.input,
            status=TaskStatus.PENDING,
            created_at=T0,
            updated_at=T0,
            run_at=T0,
        ).cancel(later(1))

        assert await repository.save(ghost) is False
        assert await repository.get(987654) is None

    async def test_concurrent_saves_from_one_version_have_exactly_one_winner(
        self, repository: TaskRepository
    ) -> None:
        claimed = await self._claimed(repository)
        rivals = [claimed.complete(n, later(2)) for n in range(4)] + [claimed.cancel(later(2))]

        outcomes = await asyncio.gather(*(repository.save(rival) for rival in rivals))

        assert sorted(outcomes) == [False] * 4 + [True]
        assert await repository.get(claimed.id) == rivals[outcomes.index(True)]

    # transitions round-trip

    @pytest.mark.parametrize("transition", list(TRANSITIONS))
    async def test_a_transition_of_a_claimed_task_round_trips(
        self, repository: TaskRepository, transition: str
    ) -> None:
        claimed = await self._claimed(repository)
        changed = TRANSITIONS[transition](claimed, later(2))

        assert await repository.save(changed) is True
        assert await repository.get(claimed.id) == changed

    async def test_a_pending_task_can_be_cancelled_and_is_then_not_claimable(
        self, repository: TaskRepository
    ) -> None:
        task = await repository.add(new_task())
        cancelled = task.cancel(later(1))

        assert await repository.save(cancelled) is True
        assert await repository.claim(task.id, later(2), LEASE) is None
        assert await repository.get(task.id) == cancelled

    async def test_a_failed_retry_is_claimable_again_once_due(self, repository: TaskRepository) -> None:
        claimed = await self._claimed(repository)
        retry = claimed.fail("boom", later(2), timedelta(seconds=10))
        assert await repository.save(retry) is True

        assert await repository.claim(claimed.id, later(11), LEASE) is None
        second = await repository.claim(claimed.id, later(12), LEASE)

        assert second == retry.claim(later(12), LEASE)
        assert second is not None
        assert second.attempts == 2

    @pytest.mark.parametrize("ending", ["fail for good", "cancel"])
    async def test_a_requeued_task_round_trips_and_runs_again(
        self, repository: TaskRepository, ending: str
    ) -> None:
        claimed = await self._claimed(repository)
        ended = TRANSITIONS[ending](claimed, later(2))
        assert await repository.save(ended) is True
        requeued = ended.requeue(later(3))

        assert await repository.save(requeued) is True
        assert await repository.get(claimed.id) == requeued
        assert await repository.claim(claimed.id, later(3), LEASE) == requeued.claim(later(3), LEASE)

    # values

    @pytest.mark.parametrize("result", JSON_VALUES, ids=repr)
    async def test_a_result_of_any_json_shape_round_trips(
        self, repository: TaskRepository, result: Any
    ) -> None:
        claimed = await self._claimed(repository)
        done = claimed.complete(result, later(2))

        assert await repository.save(done) is True
        stored = await repository.get(claimed.id)
        assert stored is not None
        assert stored.result == result
        assert type(stored.result) is type(result)

    async def test_timestamps_are_aware_and_exact_to_the_microsecond(
        self, repository: TaskRepository
    ) -> None:
        india = timezone(timedelta(hours=5, minutes=30))
        created = datetime(2025, 6, 7, 8, 9, 10, 999999, tzinfo=india)
        run_at = datetime(2025, 6, 7, 2, 39, 10, 1, tzinfo=UTC)
        task = await repository.add(new_task(created_at=created, run_at=run_at))
        now = datetime(2025, 6, 7, 3, 0, 0, 654321, tzinfo=timezone(timedelta(hours=-7)))
        claimed = await repository.claim(task.id, now, timedelta(microseconds=1))
        assert claimed is not None

        stored = await repository.get(task.id)

        assert stored == claimed
        assert stored is not None
        stamps = [stored.created_at, stored.updated_at, stored.run_at, stored.lease_until, stored.started_at]
        assert all(stamp is not None and stamp.utcoffset() is not None for stamp in stamps)
        assert stored.created_at == created
        assert stored.run_at == run_at
        assert stored.started_at == now
        assert stored.lease_until == now + timedelta(microseconds=1)

    # listing

    async def test_list_by_status_is_newest_first_and_limited(self, repository: TaskRepository) -> None:
        oldest = await repository.add(new_task(created_at=later(1)))
        newest = await repository.add(new_task(created_at=later(3)))
        tie_first = await repository.add(new_task(created_at=later(2)))
        tie_second = await repository.add(new_task(created_at=later(2)))

        listed = await repository.find(TaskQuery(status=TaskStatus.PENDING, limit=10))

        assert listed == [newest, tie_second, tie_first, oldest]
        assert await repository.find(TaskQuery(status=TaskStatus.PENDING, limit=2)) == [newest, tie_second]

    async def test_list_by_status_shows_only_that_status(self, repository: TaskRepository) -> None:
        pending = await repository.add(new_task())
        claimed = await self._claimed(repository)
        done = (await self._claimed(repository)).complete(None, later(2))
        assert await repository.save(done) is True

        assert await repository.find(TaskQuery(status=TaskStatus.PENDING, limit=10)) == [pending]
        assert await repository.find(TaskQuery(status=TaskStatus.PROCESSING, limit=10)) == [claimed]
        assert await repository.find(TaskQuery(status=TaskStatus.COMPLETED, limit=10)) == [done]
        assert await repository.find(TaskQuery(status=TaskStatus.FAILED, limit=10)) == []

    # -- what the heartbeat, the outbox and the sweeper rely on ---------------

    async def test_renew_lease_extends_only_the_current_attempt(self, repository: TaskRepository) -> None:
        claimed = await self._claimed(repository)
        assert await repository.renew_lease(claimed.id, claimed.version, later(100))
        stored = await repository.get(claimed.id, fresh=True)
        assert stored is not None
        assert stored.lease_until == later(100)
        assert stored.version == claimed.version  # a heartbeat is not a transition
        assert not await repository.renew_lease(claimed.id, claimed.version - 1, later(200))
        assert await repository.save(claimed.cancel(later(2)))
        assert not await repository.renew_lease(claimed.id, claimed.version, later(300))
        assert not await repository.renew_lease(10**12, 1, later(300))

    async def test_lapsed_finds_expired_leases_oldest_first(self, repository: TaskRepository) -> None:
        first = await self._claimed(repository)
        second = await self._claimed(repository)
        assert await repository.renew_lease(second.id, second.version, later(10))
        await self._claimed(repository)  # lease until later(31)
        pending = await repository.add(new_task())
        lapsed = await repository.lapsed(later(20), 10)
        assert [t.id for t in lapsed] == [second.id]
        lapsed = await repository.lapsed(later(60), 10)
        assert [t.id for t in lapsed][:1] == [second.id]
        assert {t.id for t in lapsed} == {first.id, second.id, lapsed[-1].id}
        assert pending.id not in {t.id for t in lapsed}
        assert len(await repository.lapsed(later(60), 1)) == 1

    async def test_undispatched_until_confirmed(self, repository: TaskRepository) -> None:
        task = await repository.add(new_task())
        found = await repository.undispatched(
            unconfirmed_before=later(10), overdue_before=T0 - LEASE, limit=10
        )
        assert [t.id for t in found] == [task.id]
        assert await repository.undispatched(unconfirmed_before=T0, overdue_before=T0 - LEASE, limit=10) == []
        await repository.mark_dispatched([task.id], later(1))
        assert (
            await repository.undispatched(unconfirmed_before=later(10), overdue_before=T0 - LEASE, limit=10)
            == []
        )
        # long overdue: the message must have been lost
        overdue = await repository.undispatched(
            unconfirmed_before=later(10), overdue_before=later(5), limit=10
        )
        assert [t.id for t in overdue] == [task.id]

    async def test_a_transition_back_to_pending_needs_a_new_message(self, repository: TaskRepository) -> None:
        claimed = await self._claimed(repository)
        assert await repository.save(claimed.fail("boom", later(2), timedelta(seconds=1)))
        found = await repository.undispatched(unconfirmed_before=later(10), overdue_before=T0, limit=10)
        assert [t.id for t in found] == [claimed.id]

    async def test_only_pending_tasks_count_as_undispatched(self, repository: TaskRepository) -> None:
        await self._claimed(repository)
        done = await self._claimed(repository)
        assert await repository.save(done.complete(1, later(2)))
        await repository.mark_dispatched([done.id], later(3))  # harmless on a finished task
        found = await repository.undispatched(
            unconfirmed_before=later(100), overdue_before=later(100), limit=10
        )
        assert found == []

    # -- listing: filters and keyset pages -----------------------------------

    async def test_find_filters_by_owner_status_and_type(self, repository: TaskRepository) -> None:
        def owned(owner: str | None, task_type: str) -> NewTask:
            return msgspec.structs.replace(new_task(task_type=task_type), owner=owner)

        a1 = await repository.add(owned("alice", "echo"))
        a2 = await repository.add(owned("alice", "other"))
        b1 = await repository.add(owned("bob", "echo"))
        claimed = await repository.claim(a1.id, later(1), LEASE)
        assert claimed is not None
        ids = lambda tasks: {t.id for t in tasks}  # noqa: E731
        assert ids(await repository.find(TaskQuery(owner="alice"))) == {a1.id, a2.id}
        assert ids(await repository.find(TaskQuery())) == {a1.id, a2.id, b1.id}
        assert ids(await repository.find(TaskQuery(type="echo"))) == {a1.id, b1.id}
        assert ids(await repository.find(TaskQuery(owner="alice", status=TaskStatus.PENDING))) == {a2.id}
        assert ids(await repository.find(TaskQuery(owner="carol"))) == set()
        assert (await repository.get(a2.id, fresh=True)).owner == "alice"  # type: ignore[union-attr]

    async def test_keyset_pages_neither_repeat_nor_skip(self, repository: TaskRepository) -> None:
        created = [await repository.add(new_task(created_at=later(i // 3))) for i in range(10)]  # ties too
        seen: list[int] = []
        before = None
        while True:
            page = await repository.find(TaskQuery(limit=3, before=before))
            if not page:
                break
            seen += [t.id for t in page]
            before = (page[-1].created_at, page[-1].id)
            # a task inserted meanwhile is newer than every page: it never shows up late
            await repository.add(new_task(created_at=later(100)))
        expected = sorted(created, key=lambda t: (t.created_at, t.id), reverse=True)
        assert seen == [t.id for t in expected]

    # -- idempotency keys -----------------------------------------------------

    async def test_add_once_creates_once_per_owner_and_key(self, repository: TaskRepository) -> None:
        key = IdempotencyKey(key="k1", request_hash="h1", expired_before=T0 - LEASE)
        mine = msgspec.structs.replace(new_task(), owner="alice")
        first = await repository.add_once(mine, key)
        again = await repository.add_once(mine, msgspec.structs.replace(key, request_hash="h2"))
        assert first.created
        assert not again.created
        assert again.task == first.task
        assert again.request_hash == "h1"  # the hash the key was first used with
        theirs = await repository.add_once(msgspec.structs.replace(new_task(), owner="bob"), key)
        assert theirs.created
        assert theirs.task.id != first.task.id

    async def test_an_expired_key_can_be_used_again(self, repository: TaskRepository) -> None:
        key = IdempotencyKey(key="k", request_hash="h", expired_before=T0 - LEASE)
        first = await repository.add_once(new_task(created_at=T0), key)
        later_key = msgspec.structs.replace(key, expired_before=later(1))
        second = await repository.add_once(new_task(created_at=later(2)), later_key)
        assert second.created
        assert second.task.id != first.task.id

    async def test_expired_keys_are_forgotten_oldest_first_and_their_tasks_stay(
        self, repository: TaskRepository
    ) -> None:
        used = {}
        for n in range(5):
            key = IdempotencyKey(key=f"k{n}", request_hash="h", expired_before=T0 - LEASE)
            used[n] = (await repository.add_once(new_task(created_at=later(n)), key)).task

        assert await repository.forget_idempotency_keys(later(3), limit=2) == 2  # k0, k1
        live = T0 - LEASE
        k2 = IdempotencyKey(key="k2", request_hash="h", expired_before=live)
        assert not (await repository.add_once(new_task(created_at=later(9)), k2)).created  # kept: not oldest
        assert await repository.forget_idempotency_keys(later(3), limit=10) == 1  # k2
        assert await repository.forget_idempotency_keys(later(3), limit=10) == 0
        for task in used.values():
            assert await repository.get(task.id, fresh=True) == task

        # A forgotten key makes a new task even for a caller that would still
        # count it as live; a kept one (k3) still answers with its task.
        again = await repository.add_once(
            new_task(created_at=later(10)), IdempotencyKey(key="k0", request_hash="h", expired_before=live)
        )
        assert again.created
        kept = await repository.add_once(
            new_task(created_at=later(10)), IdempotencyKey(key="k3", request_hash="h", expired_before=live)
        )
        assert not kept.created
        assert kept.task == used[3]

    async def test_concurrent_add_once_with_one_key_makes_one_task(self, repository: TaskRepository) -> None:
        key = IdempotencyKey(key="burst", request_hash="h", expired_before=T0 - LEASE)
        results = await asyncio.gather(*(repository.add_once(new_task(), key) for _ in range(10)))
        assert sum(r.created for r in results) == 1
        assert len({r.task.id for r in results}) == 1

    async def test_the_priority_is_stored_and_kept_by_every_change(self, repository: TaskRepository) -> None:
        added = await repository.add(msgspec.structs.replace(new_task(), priority=7))
        assert added.priority == 7
        assert (await repository.add(new_task())).priority == 0
        claimed = await repository.claim(added.id, later(1), LEASE)
        assert claimed is not None
        assert claimed.priority == 7
        retrying = claimed.fail("boom", later(2), timedelta(seconds=5))
        assert await repository.save(retrying)
        assert await repository.get(added.id, fresh=True) == retrying
        pending = await repository.undispatched(
            unconfirmed_before=later(60), overdue_before=later(60), limit=10
        )
        assert {task.id: task.priority for task in pending}[added.id] == 7  # what the sweeper publishes

    # -- the dashboard: counts, per-minute stats, workers ---------------------

    async def _finished(
        self,
        repository: TaskRepository,
        *,
        owner: str | None,
        claimed_at: float,
        finished_at: float,
        failed: bool = False,
        run_at: float = 0,
    ) -> Task:
        """A task due at ``later(run_at)``, claimed and finished at the given offsets."""
        new = new_task(run_at=later(run_at), created_at=later(run_at))
        task = await repository.add(msgspec.structs.replace(new, owner=owner))
        claimed = await repository.claim(task.id, later(claimed_at), LEASE)
        assert claimed is not None
        done = (
            claimed.fail("boom", later(finished_at), None)
            if failed
            else claimed.complete("ok", later(finished_at))
        )
        assert await repository.save(done)
        return done

    async def test_status_counts_by_owner(self, repository: TaskRepository) -> None:
        await self._finished(repository, owner="alice", claimed_at=1, finished_at=2)
        await repository.add(msgspec.structs.replace(new_task(), owner="alice"))
        await self._finished(repository, owner="bob", claimed_at=1, finished_at=2, failed=True)
        await self._claimed(repository)  # no owner: auth was off

        def nonzero(counts: dict[TaskStatus, int]) -> dict[TaskStatus, int]:
            return {status: n for status, n in counts.items() if n}

        assert nonzero(await repository.status_counts(None)) == {
            TaskStatus.COMPLETED: 1,
            TaskStatus.PENDING: 1,
            TaskStatus.FAILED: 1,
            TaskStatus.PROCESSING: 1,
        }
        assert nonzero(await repository.status_counts("alice")) == {
            TaskStatus.COMPLETED: 1,
            TaskStatus.PENDING: 1,
        }
        assert nonzero(await repository.status_counts("carol")) == {}

    async def test_minute_stats_count_finishes_and_their_percentiles(
        self, repository: TaskRepository
    ) -> None:
        # T0 is 05:06:07.123456: these finish in the minutes 05:06 and 05:07
        await self._finished(repository, owner="alice", claimed_at=1, finished_at=3)  # wait 1, run 2
        await self._finished(repository, owner="alice", claimed_at=2, finished_at=7)  # wait 2, run 5
        await self._finished(repository, owner="bob", claimed_at=4, finished_at=5, failed=True)  # 4, 1
        await self._finished(repository, owner="bob", claimed_at=1, finished_at=70)  # 05:07: wait 1, run 69
        # not counted: before the window, cancelled, retrying, running
        await self._finished(repository, owner="alice", run_at=-300, claimed_at=-299, finished_at=-200)
        cancelled = await repository.add(new_task())
        assert await repository.save(cancelled.cancel(later(3)))
        retrying = await self._claimed(repository)
        assert await repository.save(retrying.fail("boom", later(4), timedelta(seconds=5)))
        await self._claimed(repository)

        minute = T0.replace(second=0, microsecond=0)
        everyone = await repository.minute_stats(later(-60), None)
        assert [m.minute for m in everyone] == [minute, minute + timedelta(minutes=1)]
        assert all(m.minute.utcoffset() == timedelta(0) for m in everyone)
        first, second = everyone
        assert (first.completed, first.failed, second.completed, second.failed) == (2, 1, 1, 0)
        # percentile_cont: waits [1, 2, 4], runs [1, 2, 5]
        assert first.wait_p50_s == pytest.approx(2)
        assert first.wait_p95_s == pytest.approx(3.8)
        assert first.run_p50_s == pytest.approx(2)
        assert first.run_p95_s == pytest.approx(4.7)
        assert (second.wait_p50_s, second.run_p95_s) == (pytest.approx(1), pytest.approx(69))

        (mine,) = await repository.minute_stats(later(-60), "alice")
        assert (mine.minute, mine.completed, mine.failed) == (minute, 2, 0)
        assert (mine.wait_p50_s, mine.wait_p95_s) == (pytest.approx(1.5), pytest.approx(1.95))
        assert (mine.run_p50_s, mine.run_p95_s) == (pytest.approx(3.5), pytest.approx(4.85))
        # the window starts at the minute of ``since``
        assert [m.minute for m in await repository.minute_stats(later(60), None)] == [second.minute]
        assert await repository.minute_stats(later(-60), "carol") == []

    async def test_workers_report_and_are_listed_while_seen(self, repository: TaskRepository) -> None:
        def report(worker: str, seen_s: float, in_flight: int = 0, processed: int = 0) -> WorkerReport:
            return WorkerReport(
                id=worker, started_at=T0, seen_at=later(seen_s), in_flight=in_flight, processed=processed
            )

        await repository.report_worker(report("w1", 0))
        await repository.report_worker(report("w2", 10, in_flight=2, processed=5))
        assert await repository.workers_seen(later(5)) == [report("w2", 10, 2, 5)]
        assert [w.id for w in await repository.workers_seen(T0)] == ["w2", "w1"]

        await repository.report_worker(report("w1", 20, in_flight=3, processed=7))  # replaces its row
        seen = await repository.workers_seen(T0)
        assert seen == [report("w1", 20, 3, 7), report("w2", 10, 2, 5)]
        assert all(w.seen_at.utcoffset() == timedelta(0) for w in seen)

        # a report forgets the workers gone for a day, but never its own row
        await repository.report_worker(report("w2", 86_400 + 25))
        assert [w.id for w in await repository.workers_seen(later(-1000))] == ["w2"]
