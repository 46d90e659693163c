"""The behaviour every ``RecoveryStore`` must have, and the ``DispatchLog`` it reads.

Subclass ``RecoveryStoreContract`` and ``DispatchLogContract`` next to two
fixtures over one opened, empty database: ``recovery`` (the adapter under
test: ``MemoryRecovery``, ``PostgresRecovery``) and ``tasks`` (the task
table's adapter, see ``tests/contracts/tasks.py``), through which the tests
set up the rows the sweeper then finds. The outbox is one behaviour of the
two ports: ``mark_dispatched`` (a ``DispatchLog``, on ``tasks``) confirms what
``undispatched`` (on ``recovery``) would publish again.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

from taskcore.model.idempotency import IdempotencyKey
from taskcore.ports import RecoveryStore
from tests.contracts.tasks import LEASE, T0, Tasks, claimed_task, later, new_task


class RecoveryStoreContract:
    """Lapsed leases and expired idempotency keys."""

    async def test_lapsed_finds_expired_leases_oldest_first(
        self, recovery: RecoveryStore, tasks: Tasks
    ) -> None:
        first = await claimed_task(tasks)
        second = await claimed_task(tasks)
        assert await tasks.renew_lease(second.id, second.version, later(10))
        await claimed_task(tasks)  # lease until later(31)
        pending = await tasks.add(new_task())
        lapsed = await recovery.lapsed(later(20), 10)
        assert [t.id for t in lapsed] == [second.id]
        lapsed = await recovery.lapsed(later(60), 10)
        assert [t.id for t in lapsed][:1] == [second.id]
        assert {t.id for t in lapsed} == {first.id, second.id, lapsed[-1].id}
        assert pending.id not in {t.id for t in lapsed}
        assert len(await recovery.lapsed(later(60), 1)) == 1

    async def test_expired_keys_are_forgotten_oldest_first_and_their_tasks_stay(
        self, recovery: RecoveryStore, tasks: Tasks
    ) -> None:
        used = {}
        for n in range(5):
            key = IdempotencyKey(key=f"k{n}", request_hash="h", expired_before=T0 - LEASE)
            used[n] = (await tasks.add_once(new_task(created_at=later(n)), key)).task

        assert await recovery.forget_idempotency_keys(later(3), limit=2) == 2  # k0, k1
        live = T0 - LEASE
        k2 = IdempotencyKey(key="k2", request_hash="h", expired_before=live)
        assert not (await tasks.add_once(new_task(created_at=later(9)), k2)).created  # kept: not oldest
        assert await recovery.forget_idempotency_keys(later(3), limit=10) == 1  # k2
        assert await recovery.forget_idempotency_keys(later(3), limit=10) == 0
        for task in used.values():
            assert await tasks.get(task.id, fresh=True) == task

        # A forgotten key makes a new task even for a caller that would still
        # count it as live; a kept one (k3) still answers with its task.
        again = await tasks.add_once(
            new_task(created_at=later(10)), IdempotencyKey(key="k0", request_hash="h", expired_before=live)
        )
        assert again.created
        kept = await tasks.add_once(
            new_task(created_at=later(10)), IdempotencyKey(key="k3", request_hash="h", expired_before=live)
        )
        assert not kept.created
        assert kept.task == used[3]


class DispatchLogContract:
    """The outbox: a PENDING task is undispatched until ``mark_dispatched``
    confirms its message, and again when its message must have been lost or
    a transition made it PENDING anew."""

    async def test_undispatched_until_confirmed(self, recovery: RecoveryStore, tasks: Tasks) -> None:
        task = await tasks.add(new_task())
        found = await recovery.undispatched(unconfirmed_before=later(10), overdue_before=T0 - LEASE, limit=10)
        assert [t.id for t in found] == [task.id]
        assert await recovery.undispatched(unconfirmed_before=T0, overdue_before=T0 - LEASE, limit=10) == []
        await tasks.mark_dispatched([(task.id, later(1))])
        assert (
            await recovery.undispatched(unconfirmed_before=later(10), overdue_before=T0 - LEASE, limit=10)
            == []
        )
        # long overdue: the message must have been lost
        overdue = await recovery.undispatched(unconfirmed_before=later(10), overdue_before=later(5), limit=10)
        assert [t.id for t in overdue] == [task.id]

    async def test_a_transition_back_to_pending_needs_a_new_message(
        self, recovery: RecoveryStore, tasks: Tasks
    ) -> None:
        claimed = await claimed_task(tasks)
        assert await tasks.save(claimed.fail("boom", later(2), timedelta(seconds=1)))
        found = await recovery.undispatched(unconfirmed_before=later(10), overdue_before=T0, limit=10)
        assert [t.id for t in found] == [claimed.id]

    async def test_only_pending_tasks_count_as_undispatched(
        self, recovery: RecoveryStore, tasks: Tasks
    ) -> None:
        await claimed_task(tasks)
        done = await claimed_task(tasks)
        assert await tasks.save(done.complete(1, later(2)))
        await tasks.mark_dispatched([(done.id, later(3))])  # harmless on a finished task
        found = await recovery.undispatched(
            unconfirmed_before=later(100), overdue_before=later(100), limit=10
        )
        assert found == []

    async def test_an_undispatched_task_keeps_its_priority(
        self, recovery: RecoveryStore, tasks: Tasks
    ) -> None:
        """Moved from the task contract's ``test_the_priority_is_stored_and_kept_by_every_change``:
        a retry the sweeper publishes again goes with its priority."""
        added = await tasks.add(msgspec.structs.replace(new_task(), priority=7))
        await tasks.add(new_task())
        claimed = await tasks.claim(added.id, later(1), LEASE)
        assert claimed is not None
        assert await tasks.save(claimed.fail("boom", later(2), timedelta(seconds=5)))
        pending = await recovery.undispatched(
            unconfirmed_before=later(60), overdue_before=later(60), limit=10
        )
        assert {task.id: task.priority for task in pending}[added.id] == 7  # what the sweeper publishes
