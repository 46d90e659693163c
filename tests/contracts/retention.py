"""The behaviour every ``TaskPruner`` must have.

Subclass ``TaskPrunerContract`` next to three fixtures over one opened, empty
database: ``pruner`` (the adapter under test: ``MemoryPruner``,
``PostgresPruner``), ``tasks`` (the task table's adapter, see
``tests/contracts/tasks.py``), through which the tests add and finish tasks,
and ``recovery`` (see ``tests/contracts/recovery.py``), which forgets
idempotency keys.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

from taskcore.model.idempotency import IdempotencyKey
from taskcore.model.retention import PruneCutoffs
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.ports import RecoveryStore, TaskPruner
from tests.contracts.tasks import LEASE, T0, Tasks, claimed_task, later, new_task


async def finished(tasks: Tasks, status: TaskStatus, at: float, *, task_type: str = "echo") -> Task:
    """A task of ``task_type`` that reached ``status`` at ``later(at)``."""
    if status is TaskStatus.CANCELLED:
        task = (await tasks.add(new_task(task_type=task_type))).cancel(later(at))
    else:
        claimed = await claimed_task(tasks, task_type=task_type)
        if status is TaskStatus.COMPLETED:
            task = claimed.complete({"ok": True}, later(at))
        else:
            task = claimed.fail("boom", later(at), None)
    assert await tasks.save(task)
    assert task.status is status
    return task


async def remaining(tasks: Tasks, *candidates: Task) -> set[int]:
    return {task.id for task in candidates if await tasks.get(task.id, fresh=True) is not None}


class TaskPrunerContract:
    async def test_finished_tasks_of_every_final_status_go_oldest_first_up_to_the_limit(
        self, pruner: TaskPruner, tasks: Tasks
    ) -> None:
        cancelled = await finished(tasks, TaskStatus.CANCELLED, 30)
        done = await finished(tasks, TaskStatus.COMPLETED, 10)
        failed = await finished(tasks, TaskStatus.FAILED, 20)
        young = await finished(tasks, TaskStatus.COMPLETED, 40)
        cutoffs = PruneCutoffs(default=later(35))

        assert await pruner.prune(cutoffs, 2) == 2
        assert await remaining(tasks, done, failed, cancelled, young) == {cancelled.id, young.id}
        assert await pruner.prune(cutoffs, 10) == 1
        assert await pruner.prune(cutoffs, 10) == 0
        assert await remaining(tasks, done, failed, cancelled, young) == {young.id}
        assert await tasks.get(young.id, fresh=True) == young

    async def test_a_batch_takes_the_type_whose_tasks_go_back_furthest_first(
        self, pruner: TaskPruner, tasks: Tasks
    ) -> None:
        """Type by type, so a type's kept tasks are never walked: roughly the
        oldest overall, not exactly."""
        a_old = await finished(tasks, TaskStatus.COMPLETED, 10, task_type="b-first")
        a_new = await finished(tasks, TaskStatus.COMPLETED, 30, task_type="b-first")
        b = await finished(tasks, TaskStatus.COMPLETED, 20, task_type="a-second")
        assert await pruner.prune(PruneCutoffs(default=later(100)), 2) == 2
        assert await remaining(tasks, a_old, a_new, b) == {b.id}

    async def test_an_unfinished_task_stays_whatever_its_age(self, pruner: TaskPruner, tasks: Tasks) -> None:
        pending = await tasks.add(new_task())
        running = await claimed_task(tasks)
        retrying = (await claimed_task(tasks)).fail("boom", later(2), timedelta(seconds=5))
        assert await tasks.save(retrying)
        # Finished once, then run again by a client's retry: PENDING, no finished_at.
        again = (await finished(tasks, TaskStatus.FAILED, 3)).retry(later(4))
        assert await tasks.save(again)

        assert await pruner.prune(PruneCutoffs(default=later(10**6)), 100) == 0
        assert await remaining(tasks, pending, running, retrying, again) == {
            pending.id,
            running.id,
            retrying.id,
            again.id,
        }

    async def test_each_type_goes_by_its_own_cutoff_and_a_kept_type_stays(
        self, pruner: TaskPruner, tasks: Tasks
    ) -> None:
        kinds = ("plain", "short", "long", "kept")
        made = {kind: await finished(tasks, TaskStatus.COMPLETED, 10, task_type=kind) for kind in kinds}
        cutoffs = PruneCutoffs(
            default=later(20), by_type={"short": later(20), "long": later(5), "kept": None}
        )
        assert await pruner.prune(cutoffs, 100) == 2
        assert await remaining(tasks, *made.values()) == {made["long"].id, made["kept"].id}
        # Nothing is kept by default: only the types with a cutoff of their own go.
        assert await pruner.prune(PruneCutoffs(default=None, by_type={"kept": None}), 100) == 0
        others = PruneCutoffs(default=None, by_type={"long": later(20)})
        assert await pruner.prune(others, 100) == 1
        assert await remaining(tasks, *made.values()) == {made["kept"].id}

    async def test_a_task_an_idempotency_key_names_stays_until_the_key_is_forgotten(
        self, pruner: TaskPruner, tasks: Tasks, recovery: RecoveryStore
    ) -> None:
        """So a client retrying its submit within the key's lifetime gets its
        task back instead of a second run; once the key is forgotten, a
        retry is a new submit like any with an expired key."""
        key = IdempotencyKey(key="order-1", request_hash="h", expired_before=T0 - LEASE)
        keyed = (await tasks.add_once(new_task(), key)).task
        claimed = await tasks.claim(keyed.id, later(1), LEASE)
        assert claimed is not None
        assert await tasks.save(claimed.complete("ok", later(2)))
        plain = await finished(tasks, TaskStatus.COMPLETED, 2)
        cutoffs = PruneCutoffs(default=later(100))

        assert await pruner.prune(cutoffs, 100) == 1
        assert await remaining(tasks, keyed, plain) == {keyed.id}
        replay = await tasks.add_once(new_task(created_at=later(3)), key)
        assert (replay.created, replay.task.id) == (False, keyed.id)

        assert await recovery.forget_idempotency_keys(later(50), 10) == 1
        assert await pruner.prune(cutoffs, 100) == 1
        assert await tasks.get(keyed.id, fresh=True) is None
        later_key = msgspec.structs.replace(key, expired_before=later(60))
        again = await tasks.add_once(new_task(created_at=later(120)), later_key)
        assert again.created
        assert again.task.id != keyed.id

    async def test_nothing_goes_when_every_type_is_kept(self, pruner: TaskPruner, tasks: Tasks) -> None:
        done = await finished(tasks, TaskStatus.COMPLETED, 1)
        assert await pruner.prune(PruneCutoffs(default=None), 100) == 0
        assert await pruner.prune(PruneCutoffs(default=None, by_type={"echo": None}), 100) == 0
        assert await remaining(tasks, done) == {done.id}

    async def test_a_task_a_blocked_step_runs_after_stays_until_the_step_starts(
        self, pruner: TaskPruner, tasks: Tasks
    ) -> None:
        """The step is settled by reading the tasks it runs after, and its
        handler reads their results: pruning one would leave it blocked."""
        parent = await finished(tasks, TaskStatus.COMPLETED, 1)
        other = await tasks.add(new_task())
        step = await tasks.add(msgspec.structs.replace(new_task(), after=(parent.id, other.id)))
        assert step.blocked
        cutoffs = PruneCutoffs(default=later(100))

        assert await pruner.prune(cutoffs, 100) == 0
        assert await remaining(tasks, parent) == {parent.id}
        assert await tasks.save(step.unblock(later(2)))
        assert await pruner.prune(cutoffs, 100) == 1
