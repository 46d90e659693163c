"""Change notifications: telling waiting readers that a task moved on.

A change is only a hint ("task 7 is now at version 3, COMPLETED"); readers
re-read the task, so a lost or duplicated notification costs a little latency,
never correctness. Announcements are coalesced: while one batch is on its way
to the feed, the next accumulates, so a busy process sends one message per
round trip instead of one per transition, and no caller waits for the feed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import msgspec

from taskcore.errors import ServiceUnavailable
from taskcore.ports import ChangeFeed
from taskcore.status import TaskStatus
from taskcore.task import Task

log = logging.getLogger("taskcore.changes")

MAX_PENDING = 10_000


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


class ChangeAnnouncer:
    """Sends changes to the feed in the background, in batches, best effort."""

    def __init__(self, feed: ChangeFeed) -> None:
        self._feed = feed
        self._pending: list[TaskChange] = []
        self._sender: asyncio.Task[None] | None = None

    def announce(self, task: Task) -> None:
        """Queue ``task``'s new state for the feed; returns at once."""
        if len(self._pending) >= MAX_PENDING:
            return  # the feed is not keeping up; waiters re-read on their own
        self._pending.append(TaskChange.of(task))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="taskcore-announce")

    async def _send(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._feed.announce(batch)
            except ServiceUnavailable as exc:
                log.debug("%d change notifications lost: %s", len(batch), exc)

    async def aclose(self) -> None:
        """Send what is queued; call before the feed closes."""
        sender, self._sender = self._sender, None
        if sender is not None:
            await asyncio.gather(sender, return_exceptions=True)
