"""Change notifications on the wire: "task 7 is now at version 3, COMPLETED".

A change is only a hint; readers re-read the task, so a lost or duplicated
notification costs a little latency, never correctness.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec

from taskcore.model.status import TaskStatus
from taskcore.model.task import Task

log = logging.getLogger("taskcore.changes")


class TaskChange(msgspec.Struct, frozen=True, array_like=True):
    """A task reached ``version`` in ``status``."""

    id: int
    version: int
    status: TaskStatus

    @classmethod
    def of(cls, task: Task) -> TaskChange:
        return cls(task.id, task.version, task.status)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(list[TaskChange])


def encode_changes(changes: Sequence[TaskChange]) -> bytes:
    """A batch on the wire: ``[[id, version, "STATUS"], ...]``."""
    return _ENCODER.encode(changes)


def decode_changes(body: bytes) -> list[TaskChange]:
    """The changes in a message; an unreadable message holds none (it was only a hint)."""
    try:
        return _DECODER.decode(body)
    except msgspec.DecodeError:
        log.debug("ignored an unreadable change message: %r", body[:64])
        return []
