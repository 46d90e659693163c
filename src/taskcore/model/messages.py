"""The wire format of a queue message: the task id as ASCII digits.

A message is only a wake-up; everything else is read from the repository, so
the body stays a few bytes and any broker or tool can produce one. A suspect
task's wake-up says so (``b"42 alone"``): the worker that takes it must run
it alone, and learns that before it claims anything.

One message may wake several tasks (``b"42 43 44"``): tasks stored together
(a group commit, a bulk submit) share one publish, one confirm, one delivery
and one ack instead of one each. A consumer splits such a message into one
part per id (``split_wake_ups``) and settles the message once every part is
settled; a part whose task is unknown is dead-lettered alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from taskcore.errors import TaskcoreError
from taskcore.model.task import MAX_TASK_ID

_ALONE = b" alone"


class InvalidMessage(TaskcoreError):
    """The message body is not a task id."""


class WakeUp(NamedTuple):
    task_id: int
    alone: bool = False  # run it with nothing else beside it on the worker


def encode_task_message(task_id: int, *, alone: bool = False) -> bytes:
    body = str(task_id).encode("ascii")
    return body + _ALONE if alone else body


# Ids per message at most: a message is settled only when all its tasks have
# run, so a bound keeps one consumer from holding many times its share.
MAX_WAKE_UPS = 256


def encode_wake_ups(task_ids: Sequence[int]) -> bytes:
    """One message waking every task of ``task_ids`` (none of them suspect)."""
    if not 1 <= len(task_ids) <= MAX_WAKE_UPS:
        raise ValueError(f"a message wakes 1 to {MAX_WAKE_UPS} tasks, got {len(task_ids)}")
    return b" ".join(str(task_id).encode("ascii") for task_id in task_ids)


def split_wake_ups(body: bytes) -> list[bytes] | None:
    """The parts of a message that wakes several tasks, one body per id, or
    ``None`` for a message to handle whole: one wake-up, or anything that is
    not a list of task ids (its consumer dead-letters it whole, as it came)."""
    parts = body.split()
    if not 2 <= len(parts) <= MAX_WAKE_UPS or not all(_is_task_id(part) for part in parts):
        return None
    return parts


def _is_task_id(text: bytes) -> bool:
    return text.isdigit() and len(text) <= len(str(MAX_TASK_ID))


def decode_wake_up(body: bytes) -> WakeUp:
    text = body.strip()
    alone = text.endswith(_ALONE)
    if alone:
        text = text.removesuffix(_ALONE)
    if not _is_task_id(text):
        raise InvalidMessage(f"not a task id: {body[:64]!r}")
    return WakeUp(int(text), alone)


def decode_task_message(body: bytes) -> int:
    return decode_wake_up(body).task_id


def runs_alone(body: bytes) -> bool:
    """Whether a wake-up asks to run its task alone (a body that is no wake-up does not)."""
    return body.rstrip().endswith(_ALONE)
