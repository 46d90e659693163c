"""The ports the core needs from the outside world, as small async Protocols.

They are phrased as use cases ("claim this task"), not storage primitives, so
an adapter is a handful of statements and the memory fakes stay honest.
Adapters raise only taskcore errors (``RepositoryUnavailable``,
``QueueUnavailable``, ``CacheUnavailable``), never their driver's.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Protocol

from taskcore.idempotency import AddedOnce, IdempotencyKey
from taskcore.query import TaskQuery
from taskcore.task import NewTask, Task


class TaskRepository(Protocol):
    """The source of truth for tasks."""

    async def add(self, new: NewTask) -> Task:
        """Store a PENDING task and return it with its id."""
        ...

    async def add_once(self, new: NewTask, key: IdempotencyKey) -> AddedOnce:
        """Store ``new`` unless ``new.owner`` used ``key`` before (and it has not
        expired): then return the task it created. Atomic, so concurrent
        duplicates create one task."""
        ...

    async def get(self, task_id: int, *, fresh: bool = False) -> Task | None:
        """Read a task. Reads may be served by a lagging replica; ``fresh`` asks
        the primary, for decisions that must see the latest write."""
        ...

    async def claim(self, task_id: int, now: datetime, lease: timedelta) -> Task | None:
        """Atomically apply ``Task.claim`` if the task is PENDING and due.

        ``None`` means nothing was claimed: the id is unknown, the task is not
        PENDING (a duplicate delivery, a cancelled task) or not due yet.
        """
        ...

    async def save(self, task: Task) -> bool:
        """Persist a transition produced by a ``Task`` method.

        Lands only if the stored row still has ``task.version - 1``: a writer
        that lost a race (its lease lapsed, the task was cancelled) gets
        ``False`` and changes nothing.
        """
        ...

    async def find(self, query: TaskQuery) -> list[Task]:
        """Tasks matching ``query``, newest first by (created_at, id), at most ``query.limit``."""
        ...

    async def renew_lease(self, task_id: int, version: int, lease_until: datetime) -> bool:
        """Extend a running attempt's lease; ``False`` once the task is no
        longer this attempt's (cancelled, released, finished)."""
        ...

    async def mark_dispatched(self, task_ids: Sequence[int], at: datetime) -> None:
        """Record that the broker confirmed these PENDING tasks' messages."""
        ...

    async def lapsed(self, now: datetime, limit: int) -> list[Task]:
        """PROCESSING tasks whose lease ended before ``now``."""
        ...

    async def undispatched(
        self, *, unconfirmed_before: datetime, overdue_before: datetime, limit: int
    ) -> list[Task]:
        """PENDING tasks to publish again: unconfirmed since before
        ``unconfirmed_before``, or due and dispatched before ``overdue_before``."""
        ...


class Delivery(Protocol):
    """One message handed to a consumer; it stays owned until settled."""

    @property
    def body(self) -> bytes: ...

    async def ack(self) -> None: ...

    async def requeue(self) -> None:
        """Give the message back to the queue for another consumer."""
        ...

    async def dead_letter(self, reason: str) -> None:
        """Move an unprocessable message aside, with the reason, for good."""
        ...


class TaskQueue(Protocol):
    """Wake-ups for workers. A message only says "look at this task"."""

    async def publish(self, body: bytes, *, delay: timedelta | None = None) -> None:
        """Return once the broker holds the message durably."""
        ...

    def consume(self, prefetch: int) -> AbstractAsyncContextManager[Consumer]:
        """Subscribe; messages left unsettled when the context exits are redelivered."""
        ...


class Consumer(Protocol):
    async def next(self) -> Delivery:
        """Wait for the next delivery."""
        ...


class TaskCache(Protocol):
    """Fast status reads. Never the source of truth."""

    async def add_once(self, new: NewTask, key: IdempotencyKey) -> AddedOnce:
        """Store ``new`` unless ``new.owner`` used ``key`` before (and it has not
        expired): then return the task it created. Atomic, so concurrent
        duplicates create one task."""
        ...

    async def get(self, task_id: int, *, fresh: bool = False) -> Task | None:
        """Read a task. Reads may be served by a lagging replica; ``fresh`` asks
        the primary, for decisions that must see the latest write."""
        ...

    async def put(self, task: Task, ttl: timedelta | None) -> None:
        """Store ``task`` unless the entry already holds a newer version."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...
