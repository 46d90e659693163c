"""Telling waiting readers that a task moved on, in the background.

Announcements are coalesced: while one batch is on its way
to the feed, the next accumulates, so a busy process sends one message per
round trip instead of one per transition, and no caller waits for the feed.
"""

from __future__ import annotations

import asyncio
import logging

from taskcore.errors import ServiceUnavailable
from taskcore.model.changes import TaskChange
from taskcore.model.task import Task
from taskcore.ports import ChangeFeed

log = logging.getLogger("taskcore.changes")

MAX_PENDING = 10_000


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
