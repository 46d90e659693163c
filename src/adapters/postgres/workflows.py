"""Workflows on PostgreSQL: a graph stored in one transaction, and the
statements that find what a task's end settles (``taskcore.model.workflows``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from psycopg.rows import dict_row

from taskcore.adapters.postgres.database import Connection, PostgresDatabase
from taskcore.adapters.postgres.inserts import add_in
from taskcore.adapters.postgres.rows import task_row
from taskcore.adapters.postgres.sql import queries
from taskcore.batching import Coalescer
from taskcore.model.task import NewTask, Task
from taskcore.model.workflows import StoredWorkflow


class PostgresWorkflows:
    """``WorkflowStore`` and ``Dependencies``. Every read is on the primary:
    a workflow is read right after it is stored, and the rest decides transitions."""

    def __init__(self, database: PostgresDatabase, *, batch_linger_s: float = 0.0) -> None:
        self._db = database
        # Asked at every end of a task: concurrent ends share one statement.
        self._blocked: Coalescer[int, list[Task]] = Coalescer(
            self._blocked_after_batch, linger_s=batch_linger_s, name="taskcore-blocked-after"
        )

    async def add_workflow(
        self,
        *,
        name: str | None,
        owner: str | None,
        created_at: datetime,
        steps: Sequence[NewTask],
        after: Sequence[Sequence[int]],
    ) -> StoredWorkflow:
        async def add(connection: Connection) -> StoredWorkflow:
            async with connection.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(
                    queries["add_workflow"], {"name": name, "owner": owner, "created_at": created_at}
                )
                row = await cursor.fetchone()
            assert row is not None
            stored: list[Task] = []
            for new, parents in zip(steps, after, strict=True):
                placed = msgspec.structs.replace(
                    new,
                    workflow_id=row["id"],
                    after=tuple(stored[index].id for index in parents),
                    unique_key=None,  # a step is never another task: see WorkflowService
                )
                stored.append((await add_in(connection, placed)).task)
            return _workflow(row, stored)

        return await self._db.transaction(add, action=f"add a workflow of {len(steps)} steps")

    async def workflow(self, workflow_id: int) -> StoredWorkflow | None:
        async def read(connection: Connection) -> StoredWorkflow | None:
            async with connection.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(queries["get_workflow"], {"id": workflow_id})
                row = await cursor.fetchone()
            if row is None:
                return None
            async with connection.cursor(row_factory=task_row) as cursor:
                await cursor.execute(queries["workflow_steps"], {"id": workflow_id})
                return _workflow(row, await cursor.fetchall())

        return await self._db.transaction(read, action=f"read workflow {workflow_id}")

    async def parents(self, task: Task) -> list[Task]:
        if not task.after:
            return []
        params = {"ids": list(task.after)}
        return await self._db.run(
            "get_tasks", params, action=f"read the tasks {task.id} runs after", rows=task_row
        )

    async def blocked_after(self, parent_id: int) -> list[Task]:
        return await self._blocked.call(parent_id)

    async def _blocked_after_batch(self, parent_ids: list[int]) -> list[list[Task]]:
        blocked = await self._db.run(
            "blocked_after", {"ids": parent_ids}, action="find the tasks after ended ones", rows=task_row
        )
        return [[task for task in blocked if parent_id in task.after] for parent_id in parent_ids]

    async def stalled(self, limit: int) -> list[Task]:
        return await self._db.run(
            "stalled_tasks", {"limit": limit}, action="find stalled workflow steps", rows=task_row
        )


def _workflow(row: dict[str, object], steps: list[Task]) -> StoredWorkflow:
    created_at = row["created_at"]
    assert isinstance(created_at, datetime)
    return StoredWorkflow(
        id=int(str(row["id"])),
        name=row["name"] if isinstance(row["name"], str) else None,
        owner=row["owner"] if isinstance(row["owner"], str) else None,
        created_at=created_at.astimezone(UTC),
        steps=steps,
    )
