"""The HTTP contract as msgspec structs, mapped to and from core types here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from taskcore.status import TaskStatus
from taskcore.task import Task


class SubmitTask(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    input_data: Annotated[
        Any, msgspec.Meta(description="The handler's input; its type is the handler's parameter type.")
    ]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Registered task type.")] = (
        "reverse"
    )


class TaskView(msgspec.Struct, kw_only=True):
    id: int
    type: str
    status: TaskStatus
    result: Any
    error: str | None
    attempts: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    run_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, task: Task) -> TaskView:
        return cls(
            id=task.id,
            type=task.type,
            status=task.status,
            result=task.result,
            error=task.error,
            attempts=task.attempts,
            max_attempts=task.max_attempts,
            created_at=task.created_at,
            updated_at=task.updated_at,
            run_at=task.run_at,
            finished_at=task.finished_at,
        )


class TaskPage(msgspec.Struct, kw_only=True):
    items: list[TaskView]
    next_cursor: str | None = None


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
