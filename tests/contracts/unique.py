"""Unique keys on the task table (``model/uniqueness.py``), whatever stores the rows.

While a PENDING or PROCESSING task has a unique key, no other task of its
type and owner gets it: ``add_unique`` returns the holder, ``add`` refuses,
``add_once`` returns the holder and remembers that it did, and a retry that
would make a second holder is refused by ``save``. Concurrent adds may be
coalesced into one statement (PostgreSQL): a taken key never fails the
other tasks of the batch. Subclass next to a ``tasks`` fixture, as the
contracts of ``tests/contracts/tasks.py``.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from taskcore.errors import UnstorableValue
from taskcore.model.idempotency import IdempotencyKey
from taskcore.model.query import TaskQuery
from taskcore.model.task import NewTask, Task
from taskcore.model.uniqueness import UniqueKeyTaken
from tests.contracts.tasks import LEASE, T0, Tasks, later, new_task


def keyed(key: str | None, *, task_type: str = "echo", owner: str | None = None, n: int = 1) -> NewTask:
    return msgspec.structs.replace(new_task(task_type=task_type), input={"n": n}, owner=owner, unique_key=key)


async def finish(tasks: Tasks, task: Task, how: str) -> Task:
    """Take ``task`` (PENDING) to a final state the way the core would."""
    if how == "cancelled":
        done = task.cancel(later(2))
    else:
        claimed = await tasks.claim(task.id, later(1), LEASE)
        assert claimed is not None
        done = (
            claimed.complete("ok", later(2)) if how == "completed" else claimed.fail("boom", later(2), None)
        )
    assert await tasks.save(done)
    return done


class UniqueKeyContract:
    async def test_the_unique_key_is_stored(self, tasks: Tasks) -> None:
        added = await tasks.add_unique(keyed("k"))
        assert added.created
        assert added.task == Task.created(added.task.id, keyed("k"))
        assert added.task.unique_key == "k"
        assert await tasks.get(added.task.id, fresh=True) == added.task
        assert (await tasks.add(new_task())).unique_key is None

    async def test_an_unfinished_holder_is_returned_and_nothing_is_stored(self, tasks: Tasks) -> None:
        first = await tasks.add_unique(keyed("k", n=1))
        again = await tasks.add_unique(keyed("k", n=2))  # another input: the key alone decides
        assert (again.created, again.task) == (False, first.task)
        claimed = await tasks.claim(first.task.id, later(1), LEASE)  # PROCESSING holds it too
        assert claimed is not None
        assert await tasks.add_unique(keyed("k")) == (claimed, False)
        with pytest.raises(UniqueKeyTaken):
            await tasks.add(keyed("k"))
        assert [task.id for task in await self._all(tasks)] == [first.task.id]

    async def test_a_key_is_per_type_and_owner(self, tasks: Tasks) -> None:
        base = await tasks.add_unique(keyed("k"))
        others = [
            await tasks.add_unique(keyed("k", task_type="other")),
            await tasks.add_unique(keyed("k", owner="alice")),
            await tasks.add_unique(keyed("k", owner="bob")),
            await tasks.add_unique(keyed("K")),
        ]
        assert all(added.created for added in others)
        assert await tasks.add_unique(keyed("k", owner="alice")) == (others[1].task, False)
        assert await tasks.add_unique(keyed("k")) == (base.task, False)  # no owner is one owner

    @pytest.mark.parametrize("how", ["completed", "failed", "cancelled"])
    async def test_a_finished_holder_frees_its_key(self, tasks: Tasks, how: str) -> None:
        first = await tasks.add_unique(keyed("k"))
        await finish(tasks, first.task, how)
        second = await tasks.add_unique(keyed("k"))
        assert second.created
        assert second.task.id != first.task.id
        assert await tasks.add_unique(keyed("k")) == (second.task, False)

    async def test_concurrent_adds_of_one_key_store_one_task_and_the_rest_of_the_batch(
        self, tasks: Tasks
    ) -> None:
        """Coalesced into few statements on PostgreSQL: plain tasks, other keys and
        one key asked for 30 times all in flight together."""
        news = [keyed("hot", n=n) for n in range(30)]
        news += [keyed(f"cold-{n}", n=n) for n in range(10)]
        news += [keyed(None, n=n) for n in range(10)]
        outcomes = await asyncio.gather(*(tasks.add_unique(new) for new in news))
        hot = outcomes[:30]
        assert sum(added.created for added in hot) == 1
        assert len({added.task.id for added in hot}) == 1
        assert all(added.created for added in outcomes[30:])
        assert len({added.task.id for added in outcomes}) == 21
        assert len(await self._all(tasks)) == 21

    async def test_a_refused_value_fails_only_its_own_add(self, tasks: Tasks) -> None:
        outcomes = await asyncio.gather(
            tasks.add_unique(keyed("a")),
            tasks.add_unique(keyed("bad\x00key")),
            tasks.add_unique(keyed("a")),
            tasks.add_unique(keyed(None)),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], UnstorableValue)
        first, _, again, plain = outcomes
        assert not isinstance(first, BaseException)
        assert first.created
        assert again == (first.task, False)
        assert not isinstance(plain, BaseException)
        assert plain.created

    async def test_a_retry_is_refused_while_another_task_holds_the_key(self, tasks: Tasks) -> None:
        first = await tasks.add_unique(keyed("k"))
        cancelled = await finish(tasks, first.task, "cancelled")
        second = await tasks.add_unique(keyed("k"))
        assert second.created
        with pytest.raises(UniqueKeyTaken):
            await tasks.save(cancelled.retry(later(3)))
        assert await tasks.get(first.task.id, fresh=True) == cancelled
        await finish(tasks, second.task, "completed")
        retried = cancelled.retry(later(4))
        assert await tasks.save(retried)
        assert await tasks.add_unique(keyed("k")) == (retried, False)

    async def test_a_refused_retry_fails_alone_among_concurrent_saves(self, tasks: Tasks) -> None:
        """Saves may be coalesced into one UPDATE (PostgreSQL)."""
        first = await tasks.add_unique(keyed("k"))
        cancelled = await finish(tasks, first.task, "cancelled")
        await tasks.add_unique(keyed("k"))
        others = [(await tasks.add(new_task())).cancel(later(3)) for _ in range(5)]
        outcomes = await asyncio.gather(
            *(tasks.save(task) for task in [*others[:2], cancelled.retry(later(3)), *others[2:]]),
            return_exceptions=True,
        )
        assert isinstance(outcomes[2], UniqueKeyTaken)
        assert outcomes[:2] + outcomes[3:] == [True] * 5
        for task in others:
            assert await tasks.get(task.id, fresh=True) == task

    async def test_an_idempotency_key_remembers_that_it_took_the_holder(self, tasks: Tasks) -> None:
        holder = await tasks.add_unique(keyed("k"))
        key = IdempotencyKey(key="i1", request_hash="h", expired_before=T0 - LEASE)
        first = await tasks.add_once(keyed("k"), key)
        assert (first.task, first.replayed, first.deduplicated, first.created) == (
            holder.task,
            False,
            True,
            False,
        )
        done = await finish(tasks, holder.task, "completed")
        # The unique key is free now, but a replay answers as the first use did.
        replay = await tasks.add_once(keyed("k"), key)
        assert (replay.task, replay.replayed, replay.deduplicated, replay.request_hash) == (
            done,
            True,
            True,
            "h",
        )
        fresh = await tasks.add_once(keyed("k"), msgspec.structs.replace(key, key="i2"))
        assert (fresh.replayed, fresh.deduplicated, fresh.created) == (False, False, True)
        assert fresh.task.id != holder.task.id
        again = await tasks.add_once(keyed("k"), msgspec.structs.replace(key, key="i2"))
        assert (again.task, again.replayed, again.deduplicated) == (fresh.task, True, False)

    async def test_concurrent_add_once_with_other_keys_and_one_unique_key_store_one_task(
        self, tasks: Tasks
    ) -> None:
        keys = [IdempotencyKey(key=f"i{n}", request_hash="h", expired_before=T0 - LEASE) for n in range(10)]
        outcomes = await asyncio.gather(
            *(tasks.add_once(keyed("k"), key) for key in keys),
            *(tasks.add_unique(keyed("k")) for _ in range(5)),
        )
        assert len({outcome.task.id for outcome in outcomes}) == 1
        assert sum(outcome.created for outcome in outcomes) == 1
        assert len(await self._all(tasks)) == 1

    @staticmethod
    async def _all(tasks: Tasks) -> list[Task]:
        return await tasks.find(TaskQuery(limit=1000), fresh=True)
