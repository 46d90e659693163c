"""Unique tasks: while an unfinished task has a unique key, a submit with the
same key gets that task back instead of a new one.

A key is scoped to the task's type and owner. The type, because "the same
work" only means something for one handler; the owner, because a caller
never sees another owner's task (it would be handed one otherwise), as
Idempotency-Keys are kept per owner. "Unfinished" is PENDING or PROCESSING:
once the task is final, the key is free and the next submit makes a new
task. The database holds the rule (a partial unique index), so concurrent
submits of one key make one task whichever API process they reach.

This is not an Idempotency-Key (``model/idempotency.py``): that replays one
client's request, whatever became of the task; a unique key merges the
requests of any number of clients while the work is still to be done.
"""

from __future__ import annotations

from typing import NamedTuple

from taskcore.errors import InvalidInput, InvalidTransition
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task

MAX_UNIQUE_KEY_LENGTH = 255

HOLDING_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.PROCESSING})
"""A task in one of these holds its unique key; a final one has let it go."""


def check_unique_key(key: object) -> str:
    """``key`` if it can be a unique key (a string of 1 to 255 characters), else ``InvalidInput``."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_UNIQUE_KEY_LENGTH:
        raise InvalidInput(
            f"a unique key is a string of 1 to {MAX_UNIQUE_KEY_LENGTH} characters, got {key!r:.80}",
            unique_key=key,
        )
    return key


def unique_slot(task_type: str, owner: str | None, key: str) -> tuple[str, str, str]:
    """What two tasks must share to exclude each other; a missing owner (auth
    off, a library) is one owner, as the database's index sees it."""
    return task_type, owner or "", key


def holds_unique_key(task: Task) -> bool:
    return task.unique_key is not None and task.status in HOLDING_STATUSES


class UniqueKeyTaken(InvalidTransition):
    """Another unfinished task of this type and owner has this unique key."""

    @classmethod
    def adding(cls, task_type: str, key: str | None) -> UniqueKeyTaken:
        return cls(f"an unfinished {task_type!r} task already has the unique key {key!r}", unique_key=key)

    @classmethod
    def reviving(cls, task: Task) -> UniqueKeyTaken:
        """``task`` (finished) cannot be unfinished again (a retry): another task holds its key."""
        return cls(
            f"task {task.id} cannot run again while another unfinished {task.type!r} task has its"
            f" unique key {task.unique_key!r}",
            task_id=task.id,
            unique_key=task.unique_key,
        )


class Added(NamedTuple):
    """What storing a task with a unique key did."""

    task: Task
    created: bool  # False: ``task`` is the unfinished one that already had the key
