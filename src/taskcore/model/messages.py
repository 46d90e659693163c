"""The wire format of a queue message: the task id as ASCII digits.

A message is only a wake-up; everything else is read from the repository, so
the body stays a few bytes and any broker or tool can produce one.
"""

from __future__ import annotations

from taskcore.errors import TaskcoreError
from taskcore.model.task import MAX_TASK_ID


class InvalidMessage(TaskcoreError):
    """The message body is not a task id."""


def encode_task_message(task_id: int) -> bytes:
    return str(task_id).encode("ascii")


def decode_task_message(body: bytes) -> int:
    text = body.strip()
    if not text.isdigit() or len(text) > len(str(MAX_TASK_ID)):
        raise InvalidMessage(f"not a task id: {body[:64]!r}")
    return int(text)
