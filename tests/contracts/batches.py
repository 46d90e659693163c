"""The behaviour every ``TaskBatches`` adapter must have: many tasks stored together or not at all.

Subclass ``TaskBatchesContract`` next to a ``tasks`` fixture giving the task
table's adapter (``MemoryTasks``, ``PostgresTasks``) over an empty database.
"""

from __future__ import annotations

import msgspec
import pytest

from taskcore.errors import InvalidInput, UnstorableValue
from taskcore.model.query import TaskQuery
from taskcore.model.task import NewTask, Task
from taskcore.ports import TaskBatches
from tests.contracts.tasks import Tasks, new_task


class Batches(Tasks, TaskBatches):
    """The task table's adapter, which stores batches too."""


def numbered(n: int, **changes: object) -> NewTask:
    return msgspec.structs.replace(new_task(), input={"n": n}, **changes)


class TaskBatchesContract:
    async def test_a_thousand_tasks_are_stored_in_the_order_given(self, tasks: Batches) -> None:
        news = [numbered(n, priority=n % 10, owner=f"o{n % 3}") for n in range(1000)]
        added = await tasks.add_many(news)
        assert [one.created for one in added] == [True] * 1000
        assert [one.task for one in added] == [
            Task.created(one.task.id, new) for one, new in zip(added, news, strict=True)
        ]
        assert len({one.task.id for one in added}) == 1000
        assert await tasks.get(added[999].task.id, fresh=True) == added[999].task

    async def test_one_task_that_cannot_be_stored_stores_none_and_is_named(self, tasks: Batches) -> None:
        news = [numbered(n) for n in range(999)] + [
            msgspec.structs.replace(new_task(), input={"bad": "\x00"})
        ]
        with pytest.raises(UnstorableValue, match=r"items\[999\]"):
            await tasks.add_many(news)
        assert await tasks.find(TaskQuery(limit=10)) == []

    async def test_a_batch_holds_plain_unique_and_dependent_tasks(self, tasks: Batches) -> None:
        parent = await tasks.add(new_task())
        holder = await tasks.add(numbered(0, unique_key="held"))
        added = await tasks.add_many(
            [
                numbered(1),
                numbered(2, unique_key="held"),
                numbered(3, unique_key="fresh"),
                numbered(4, unique_key="fresh"),
                numbered(5, after=(parent.id,)),
            ]
        )
        assert [one.created for one in added] == [True, False, True, False, True]
        assert added[1].task.id == holder.id
        assert added[3].task.id == added[2].task.id
        assert (added[4].task.after, added[4].task.blocked) == ((parent.id,), True)

    async def test_each_task_of_a_batch_keeps_its_trace_context(self, tasks: Batches) -> None:
        parent = await tasks.add(new_task())
        contexts = ["plain", "unique", "dependent", None]
        added = await tasks.add_many(
            [
                numbered(1, trace_context="plain"),
                numbered(2, trace_context="unique", unique_key="u"),
                numbered(3, trace_context="dependent", after=(parent.id,)),
                numbered(4),
            ]
        )
        assert [one.task.trace_context for one in added] == contexts
        assert [(await tasks.get(one.task.id, fresh=True)) == one.task for one in added] == [True] * 4

    async def test_each_task_of_a_batch_keeps_its_tags_and_metadata(self, tasks: Batches) -> None:
        parent = await tasks.add(new_task())
        added = await tasks.add_many(
            [
                numbered(1, tags=("plain",), metadata={"k": 1}),
                numbered(2, tags=("unique", "u"), unique_key="u"),
                numbered(3, tags=("dependent",), metadata={"k": [3]}, after=(parent.id,)),
                numbered(4),
            ]
        )
        assert [(one.task.tags, one.task.metadata) for one in added] == [
            (("plain",), {"k": 1}),
            (("unique", "u"), {}),
            (("dependent",), {"k": [3]}),
            ((), {}),
        ]
        assert [(await tasks.get(one.task.id, fresh=True)) == one.task for one in added] == [True] * 4

    async def test_a_dependent_task_of_no_task_stores_none(self, tasks: Batches) -> None:
        with pytest.raises(InvalidInput, match="987654"):
            await tasks.add_many([numbered(1), numbered(2, after=(987654,))])
        assert await tasks.find(TaskQuery(limit=10)) == []
