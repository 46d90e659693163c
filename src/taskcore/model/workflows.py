"""Workflows: tasks that run after other tasks, and graphs of them.

A task may name the tasks it runs after (``after``). It is stored PENDING and
*blocked*: no wake-up goes out for it and no claim takes it, until the tasks
it runs after have ended. Then it is unblocked (it may start, and its handler
can read their results) or, when one of them FAILED for good or was
CANCELLED, cancelled with a reason naming that one, unless it runs anyway.
Fan-out, fan-in and chains are all this one rule; a workflow is a graph of
named steps stored in one transaction.
"""

from __future__ import annotations

import graphlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from taskcore.errors import InvalidInput, TaskcoreError
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task

MAX_STEPS = 1000
MAX_AFTER = 100
_STEP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


class WorkflowNotFound(TaskcoreError):
    """No workflow has this id."""


class StoredWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str | None
    owner: str | None
    created_at: datetime
    steps: list[Task]  # in the order they were given

    def visible_to(self, owner: str | None) -> bool:
        return owner is None or self.owner == owner

    @property
    def status(self) -> str:
        """RUNNING while a step has not ended; then COMPLETED if every step
        did, FAILED if one failed, else CANCELLED."""
        statuses = {step.status for step in self.steps}
        if not all(status.is_final for status in statuses):
            return "RUNNING"
        if statuses == {TaskStatus.COMPLETED}:
            return "COMPLETED"
        return "FAILED" if TaskStatus.FAILED in statuses else "CANCELLED"


@dataclass(frozen=True, slots=True)
class Unblock:
    """Every task it runs after ended as it needs: it may start."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """One it runs after FAILED or was CANCELLED: it is cancelled, for this reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Some task it runs after is still to end."""


Readiness = Unblock | Cancel | Wait


def readiness(task: Task, parents: Sequence[Task]) -> Readiness:
    """What a blocked task's parents (the tasks it runs after) mean for it.
    A parent that is gone (deleted) counts as COMPLETED with no result."""
    for parent in sorted(parents, key=lambda parent: parent.id):
        if parent.status in (TaskStatus.FAILED, TaskStatus.CANCELLED) and not task.run_anyway:
            name = f"step {parent.step!r}" if parent.step else f"task {parent.id}"
            return Cancel(f"cancelled: {name}, which it runs after, is {parent.status.value}")
    if all(parent.is_final for parent in parents):
        return Unblock()
    return Wait()


def settle(task: Task, parents: Sequence[Task], now: datetime) -> Task | None:
    """The transition ``readiness`` asks of a blocked task, or ``None`` (wait)."""
    if task.status is not TaskStatus.PENDING or not task.blocked:
        return None
    decision = readiness(task, parents)
    if isinstance(decision, Unblock):
        return task.unblock(now)
    if isinstance(decision, Cancel):
        return task.cancel(now, decision.reason)
    return None


def parent_results(parents: Sequence[Task]) -> dict[str, Any]:
    """What a step's handler reads of the tasks it ran after: each COMPLETED
    one's result, by step name (or by task id, as a string, for a task that is
    not a named step)."""
    return {
        parent.step or str(parent.id): parent.result
        for parent in parents
        if parent.status is TaskStatus.COMPLETED
    }


def check_after(after: Sequence[int]) -> tuple[int, ...]:
    ids = tuple(dict.fromkeys(after))
    if len(ids) > MAX_AFTER:
        raise InvalidInput(f"a task runs after at most {MAX_AFTER} tasks, got {len(ids)}")
    return ids


class StepSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a workflow to submit: a task and the steps it runs after, by name."""

    name: str
    type: str
    input: Any
    after: tuple[str, ...] = ()
    run_anyway: bool = False
    priority: int | None = None
    queue: str | None = None
    # Its own, besides the workflow's (model/tags.py ``merged``).
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] | None = None


def ordered_steps(steps: Sequence[StepSpec]) -> list[StepSpec]:
    """The steps in an order where each comes after the steps it runs after,
    or ``InvalidInput`` naming what is wrong: no steps, too many, a bad or
    repeated name, an unknown step in ``after``, or a cycle."""
    if not steps:
        raise InvalidInput("a workflow needs at least one step")
    if len(steps) > MAX_STEPS:
        raise InvalidInput(f"a workflow has at most {MAX_STEPS} steps, got {len(steps)}")
    by_name: dict[str, StepSpec] = {}
    for index, step in enumerate(steps):
        if not _STEP.match(step.name):
            raise InvalidInput(
                f"steps[{index}]: a step name is 1 to 100 of A-Z a-z 0-9 _ . : -, got {step.name!r}"
            )
        if step.name in by_name:
            raise InvalidInput(f"steps[{index}]: two steps are named {step.name!r}")
        by_name[step.name] = step
    for index, step in enumerate(steps):
        for name in step.after:
            if name not in by_name:
                raise InvalidInput(f"steps[{index}] ({step.name!r}) runs after {name!r}, which is no step")
    sorter = graphlib.TopologicalSorter({step.name: step.after for step in steps})
    try:
        return [by_name[name] for name in sorter.static_order()]
    except graphlib.CycleError as exc:
        cycle = " -> ".join(reversed(exc.args[1]))
        raise InvalidInput(f"the steps run after each other in a cycle: {cycle}") from exc
