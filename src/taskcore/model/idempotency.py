"""Idempotency keys: a client retrying a submit gets the original task back.

Per the IETF Idempotency-Key draft: the key is scoped to its owner and kept
for a while (24 h by default); the same key with the same request returns the
original task, with a different request it is refused. The repository makes
the key and the task one atomic step, so concurrent duplicates create one
task.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from taskcore.errors import TaskcoreError
from taskcore.model.task import Task


class IdempotencyConflict(TaskcoreError):
    """This Idempotency-Key was used with a different request."""


class IdempotencyKey(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    request_hash: str
    expired_before: datetime  # an older use of the key no longer counts


class AddedOnce(NamedTuple):
    task: Task
    created: bool  # False: the key was used before and this is the original task
    request_hash: str  # the hash the key was first used with


def request_hash(
    task_type: str,
    stored_input: Any,
    *,
    priority: int = 0,
    queue: str | None = None,
    after: tuple[int, ...] = (),
    run_anyway: bool = False,
) -> str:
    """A fingerprint of what was asked, independent of JSON key order. What
    was not asked for (the default priority, no queue, no ``after``) is left
    out, so keys stored before those options existed still match."""
    asked: list[Any] = [task_type, stored_input]
    if priority or queue or after:
        asked.append(priority)
    if queue or after:
        asked.append(queue)
    if after:
        asked += [list(after), run_anyway]
    canonical = msgspec.json.encode(asked, order="sorted")
    return hashlib.sha256(canonical).hexdigest()
