"""Ports of workflows: storing graphs of tasks, and finding what a task's end settles.

A task that runs after others is stored blocked (``model/workflows.py``).
The submit path stores workflows (``WorkflowStore``); the transition writer
and the sweeper find the blocked tasks an ending task may settle, and the
tasks a blocked one runs after (``Dependencies``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from taskcore.model.task import NewTask, Task
from taskcore.model.workflows import StoredWorkflow


class WorkflowStore(Protocol):
    async def add_workflow(
        self,
        *,
        name: str | None,
        owner: str | None,
        created_at: datetime,
        steps: Sequence[NewTask],
        after: Sequence[Sequence[int]],
    ) -> StoredWorkflow:
        """Store a workflow and its steps in one transaction: all or nothing.
        ``after[i]`` are the positions in ``steps`` of the steps step ``i``
        runs after, each earlier than ``i``; steps that run after others are
        stored blocked."""
        ...

    async def workflow(self, workflow_id: int) -> StoredWorkflow | None:
        """A workflow and its steps as they are now, or ``None``."""
        ...


class Dependencies(Protocol):
    """Read on the primary: they decide transitions."""

    async def parents(self, task: Task) -> list[Task]:
        """The tasks ``task`` runs after, as they are now (a deleted one is left out)."""
        ...

    async def blocked_after(self, parent_id: int) -> list[Task]:
        """The blocked PENDING tasks that run after ``parent_id``. Asked at
        every end of a task, so it must be cheap when there are none (an
        index of blocked tasks only; concurrent asks may share a statement)."""
        ...

    async def stalled(self, limit: int) -> list[Task]:
        """Blocked PENDING tasks whose parents have all ended, or one of
        which FAILED or was CANCELLED: an end whose settling was missed (its
        worker died between the end and the settling, or the database
        failed then). For the sweeper, at most ``limit``, oldest first."""
        ...
