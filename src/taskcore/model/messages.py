"""The wire format of a queue message: the task id as ASCII digits.

A message is only a wake-up; everything else is read from the repository, so
the body stays a few bytes and any broker or tool can produce one. A suspect
task's wake-up says so (``b"42 alone"``): the worker that takes it must run
it alone, and learns that before it claims anything.
"""

from __future__ import annotations

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


def decode_wake_up(body: bytes) -> WakeUp:
    text = body.strip()
    alone = text.endswith(_ALONE)
    if alone:
        text = text.removesuffix(_ALONE)
    if not text.isdigit() or len(text) > len(str(MAX_TASK_ID)):
        raise InvalidMessage(f"not a task id: {body[:64]!r}")
    return WakeUp(int(text), alone)


def decode_task_message(body: bytes) -> int:
    return decode_wake_up(body).task_id


def runs_alone(body: bytes) -> bool:
    """Whether a wake-up asks to run its task alone (a body that is no wake-up does not)."""
    return body.rstrip().endswith(_ALONE)
