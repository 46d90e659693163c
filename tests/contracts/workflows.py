"""The behaviour every workflow adapter must have (``WorkflowStore`` and ``Dependencies``).

Subclass ``WorkflowsContract`` next to a ``workflows`` fixture (``MemoryWorkflows``,
``PostgresWorkflows``) and a ``tasks`` fixture (the task table's adapter,
``tests/contracts/tasks.py``) over one empty database.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from taskcore.errors import InvalidInput, UnstorableValue
from taskcore.model.query import TaskQuery
from taskcore.model.status import TaskStatus
from taskcore.model.task import NewTask
from taskcore.ports import Dependencies, WorkflowStore
from tests.contracts.tasks import LEASE, T0, Tasks, later, new_task


class Workflows(WorkflowStore, Dependencies):
    """Both ports, as one adapter implements them."""


def step(name: str, **changes: object) -> NewTask:
    return msgspec.structs.replace(new_task(), step=name, **changes)


async def diamond(workflows: Workflows) -> dict[str, int]:
    stored = await workflows.add_workflow(
        name="diamond",
        owner="alice",
        created_at=T0,
        steps=[step("a"), step("b"), step("c"), step("d", run_anyway=True)],
        after=[[], [0], [0], [1, 2]],
    )
    return {task.step or "": task.id for task in stored.steps}


class WorkflowsContract:
    async def test_a_workflow_is_stored_whole_with_its_graph(self, workflows: Workflows) -> None:
        ids = await diamond(workflows)
        stored = [await workflows.workflow(n) for n in range(1, 3)]
        found = next(w for w in stored if w is not None and {t.id for t in w.steps} == set(ids.values()))
        assert (found.name, found.owner, found.created_at) == ("diamond", "alice", T0)
        steps = {task.step: task for task in found.steps}
        assert [task.step for task in found.steps] == ["a", "b", "c", "d"]
        assert steps["a"].after == ()
        assert steps["d"].after == (ids["b"], ids["c"])
        assert [steps[name].blocked for name in "abcd"] == [False, True, True, True]
        assert steps["d"].run_anyway
        assert {task.workflow_id for task in found.steps} == {found.id}
        assert await workflows.workflow(10**9) is None

    async def test_each_step_keeps_its_trace_context(self, workflows: Workflows) -> None:
        stored = await workflows.add_workflow(
            name=None,
            owner=None,
            created_at=T0,
            steps=[step("a", trace_context="submit"), step("b", trace_context="submit")],
            after=[[], [0]],
        )
        assert [task.trace_context for task in stored.steps] == ["submit", "submit"]

    async def test_each_step_keeps_its_tags_and_metadata(self, workflows: Workflows) -> None:
        stored = await workflows.add_workflow(
            name=None,
            owner=None,
            created_at=T0,
            steps=[step("a", tags=("wf", "a"), metadata={"s": "a"}), step("b", tags=("wf",))],
            after=[[], [0]],
        )
        assert [(task.tags, task.metadata) for task in stored.steps] == [
            (("wf", "a"), {"s": "a"}),
            (("wf",), {}),
        ]

    async def test_a_workflow_with_a_step_that_cannot_be_stored_stores_nothing(
        self, workflows: Workflows, tasks: Tasks
    ) -> None:
        with pytest.raises(UnstorableValue):
            await workflows.add_workflow(
                name=None,
                owner=None,
                created_at=T0,
                steps=[step("a"), msgspec.structs.replace(step("b"), input={"bad": "nul\x00"})],
                after=[[], [0]],
            )
        assert await tasks.find(TaskQuery(limit=100)) == []

    async def test_a_blocked_task_is_not_claimed(self, workflows: Workflows, tasks: Tasks) -> None:
        ids = await diamond(workflows)
        assert await tasks.claim(ids["b"], later(1), LEASE) is None
        assert await tasks.claim(ids["b"], later(1), LEASE, alone=True) is None
        assert await tasks.claim(ids["a"], later(1), LEASE) is not None

    async def test_the_blocked_tasks_after_an_ended_one_and_its_parents_are_found(
        self, workflows: Workflows, tasks: Tasks
    ) -> None:
        ids = await diamond(workflows)
        assert {task.id for task in await workflows.blocked_after(ids["a"])} == {ids["b"], ids["c"]}
        assert [task.id for task in await workflows.blocked_after(ids["b"])] == [ids["d"]]
        assert await workflows.blocked_after(ids["d"]) == []
        d = await tasks.get(ids["d"], fresh=True)
        assert d is not None
        assert sorted(task.id for task in await workflows.parents(d)) == [ids["b"], ids["c"]]
        # Concurrent asks (coalesced into one statement on PostgreSQL) each get their own.
        many = await asyncio.gather(*(workflows.blocked_after(ids[name]) for name in "abcd"))
        assert [len(found) for found in many] == [2, 1, 1, 0]

    async def test_an_unblocked_task_is_no_longer_found_blocked_and_may_be_claimed(
        self, workflows: Workflows, tasks: Tasks
    ) -> None:
        ids = await diamond(workflows)
        b = await tasks.get(ids["b"], fresh=True)
        assert b is not None
        assert await tasks.save(b.unblock(later(1)))
        assert [task.id for task in await workflows.blocked_after(ids["a"])] == [ids["c"]]
        claimed = await tasks.claim(ids["b"], later(2), LEASE)
        assert claimed is not None
        assert claimed.status is TaskStatus.PROCESSING

    async def test_stalled_tasks_are_those_whose_parents_ended_or_one_failed(
        self, workflows: Workflows, tasks: Tasks
    ) -> None:
        ids = await diamond(workflows)
        assert await workflows.stalled(10) == []
        a = await tasks.claim(ids["a"], later(1), LEASE)
        assert a is not None
        assert await workflows.stalled(10) == []  # a runs: b and c wait
        assert await tasks.save(a.complete("ok", later(2)))
        assert {task.id for task in await workflows.stalled(10)} == {ids["b"], ids["c"]}
        b = await tasks.get(ids["b"], fresh=True)
        assert b is not None
        assert await tasks.save(b.cancel(later(3)))
        # d waits on c, but b (one it runs after) was cancelled: it is stalled too.
        assert {task.id for task in await workflows.stalled(10)} == {ids["c"], ids["d"]}
        assert len(await workflows.stalled(1)) == 1

    async def test_a_task_added_after_others_needs_them_to_exist(self, tasks: Tasks) -> None:
        parent = await tasks.add(new_task())
        child = await tasks.add(msgspec.structs.replace(new_task(), after=(parent.id,)))
        assert (child.after, child.blocked) == ((parent.id,), True)
        assert await tasks.get(child.id, fresh=True) == child
        with pytest.raises(InvalidInput, match="987654"):
            await tasks.add(msgspec.structs.replace(new_task(), after=(parent.id, 987654)))
