"""The HTTP contract as msgspec structs, mapped to and from core types here."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec

from taskcore.errors import InvalidInput
from taskcore.status import TaskStatus
from taskcore.task import Task

MAX_DELAY_S = 366 * 86_400


class SubmitTask(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    input_data: Annotated[
        Any, msgspec.Meta(description="The handler's input; its type is the handler's parameter type.")
    ]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Registered task type.")] = (
        "reverse"
    )
    run_at: (
        Annotated[
            datetime,
            msgspec.Meta(
                tz=True, description="Run no earlier than this (RFC 3339 with an offset, in the future)."
            ),
        ]
        | None
    ) = None
    delay_s: (
        Annotated[
            float,
            msgspec.Meta(ge=0, le=MAX_DELAY_S, description="Run no earlier than this many seconds from now."),
        ]
        | None
    ) = None

    def delay(self, now: datetime) -> timedelta | None:
        """When the task may run, as a delay from ``now``; ``InvalidInput`` if
        both ways are given or ``run_at`` is not in the future."""
        if self.run_at is not None and self.delay_s is not None:
            raise InvalidInput("give run_at or delay_s, not both")
        if self.delay_s is not None:
            return timedelta(seconds=self.delay_s) if self.delay_s > 0 else None
        if self.run_at is None:
            return None
        delay = self.run_at - now
        if delay <= timedelta(0):
            raise InvalidInput("run_at must be in the future")
        if delay.total_seconds() > MAX_DELAY_S:
            raise InvalidInput("run_at is more than a year away")
        return delay


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
