"""Which task the code running now works on, for log lines.

The processor sets it while it handles a delivery (the id first, the type and
attempt once the task is claimed); a logging filter in the entrypoints copies
it onto each record. A ``ContextVar`` follows the asyncio task that handles
the delivery, and the processor copies the context into the thread that runs
a sync handler, so a handler's own log lines carry it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import msgspec

from taskcore.model.task import Task


class TaskLogContext(msgspec.Struct, frozen=True):
    task_id: int
    type: str | None = None
    attempt: int | None = None


_current: ContextVar[TaskLogContext | None] = ContextVar("taskcore_task", default=None)


def current_task() -> TaskLogContext | None:
    """The task being handled in this context; ``None`` outside one."""
    return _current.get()


@contextmanager
def handling(task_id: int) -> Iterator[None]:
    """Mark the code inside as working on ``task_id``; ``claimed`` adds the rest."""
    token = _current.set(TaskLogContext(task_id))
    try:
        yield
    finally:
        _current.reset(token)


def claimed(task: Task) -> None:
    """Inside ``handling``: the claim told us the task's type and attempt."""
    _current.set(TaskLogContext(task.id, task.type, task.attempts))
