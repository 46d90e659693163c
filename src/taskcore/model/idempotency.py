"""Idempotency keys: a client retrying a submit gets the original task back.

Per the IETF Idempotency-Key draft: the key is scoped to its owner and kept
for a while (24 h by default); the same key with the same request returns the
original task, with a different request it is refused. The repository makes
the key and the task one atomic step, so concurrent duplicates create one
task.

With a unique key too (``model/uniqueness.py``), the key's first use may find
an unfinished task holding the unique key and take that one instead of
creating one; the key remembers that, so a retry answers exactly as the first
use did (the same task, deduplicated) even once the task has finished and
the unique key is free again: a replay never creates a task.
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
    replayed: bool  # the key was used before: ``task`` is what that use gave
    request_hash: str  # the hash the key was first used with
    # The key's first use (this one, or the replayed one) found ``task``
    # unfinished with the new task's unique key, and took it instead of adding one.
    deduplicated: bool = False

    @property
    def created(self) -> bool:
        """This call stored ``task``."""
        return not self.replayed and not self.deduplicated


def request_hash(
    task_type: str,
    stored_input: Any,
    *,
    priority: int = 0,
    queue: str | None = None,
    after: tuple[int, ...] = (),
    run_anyway: bool = False,
    unique_key: str | None = None,
    callback_url: str | None = None,
    tags: tuple[str, ...] = (),
    metadata: dict[str, Any] | None = None,
) -> str:
    """A fingerprint of what was asked, independent of JSON key order. What
    was not asked for (the default priority, no queue, no unique key, no
    ``after``) is left out, so keys stored before those options existed
    still match. A unique key a handler derives from the input is not asked
    for: the input covers it."""
    asked: list[Any] = [task_type, stored_input]
    unique = unique_key is not None
    if priority or queue or unique or after:
        asked.append(priority)
    if queue or unique or after:
        asked.append(queue)
    if unique or after:
        asked.append(unique_key)
    if after:
        asked += [list(after), run_anyway]
    if callback_url is not None:  # tagged, so that it never reads as one of the positions above
        asked.append({"callback_url": callback_url})
    if tags:
        asked.append({"tags": list(tags)})
    if metadata:
        asked.append({"metadata": metadata})
    canonical = msgspec.json.encode(asked, order="sorted")
    return hashlib.sha256(canonical).hexdigest()
