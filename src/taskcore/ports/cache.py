"""Ports for fast reads and change notifications: never the source of truth."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Protocol

from taskcore.model.changes import TaskChange
from taskcore.model.task import Task


class TaskCache(Protocol):
    """Fast status reads."""

    async def get(self, task_id: int) -> Task | None:
        """The cached task, or ``None`` on a miss (or an unreadable entry)."""
        ...

    async def put(self, task: Task, ttl: timedelta | None) -> None:
        """Store ``task`` unless the entry already holds a newer version."""
        ...


class ChangeFeed(Protocol):
    """Carries change notifications to every process that waits on tasks.

    Best effort by contract: a notification may be lost (a subscriber that
    reconnects misses what was sent meanwhile), so readers re-check the
    database now and then. Failures raise ``ChangeFeedUnavailable``.
    """

    async def announce(self, changes: Sequence[TaskChange]) -> None:
        """Send ``changes`` to every current subscriber, in any process."""
        ...

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[TaskChange]]:
        """Receive every change announced while subscribed. Iteration raises
        ``ChangeFeedUnavailable`` when the subscription is lost."""
        ...
