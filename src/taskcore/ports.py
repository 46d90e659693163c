"""The ports the core needs from the outside world, as small async Protocols.

They are phrased as use cases ("claim this task"), not storage primitives, so
an adapter is a handful of statements and the memory fakes stay honest.
Adapters raise only taskcore errors (``RepositoryUnavailable``,
``QueueUnavailable``, ``CacheUnavailable``), never their driver's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from taskcore.idempotency import AddedOnce, IdempotencyKey
from taskcore.query import TaskQuery
from taskcore.task import NewTask, Task

if TYPE_CHECKING:
    from taskcore.changes import TaskChange
    from taskcore.presence import WorkerReport
    from taskcore.stats import MinuteStats
    from taskcore.status import TaskStatus


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

    async def forget_idempotency_keys(self, used_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` idempotency keys first used before
        ``used_before`` (expired: they no longer count) and return how many
        went. Their tasks stay."""
        ...

    async def status_counts(self, owner: str | None) -> dict[TaskStatus, int]:
        """How many of ``owner``'s tasks (``None``: everyone's) are in each
        status; a status with none may be left out."""
        ...

    async def minute_stats(self, since: datetime, owner: str | None) -> list[MinuteStats]:
        """Per minute (UTC), oldest first, from the minute of ``since``: the
        tasks of ``owner`` (``None``: everyone's) that reached COMPLETED or
        FAILED, with percentiles as ``percentile_cont`` computes them. Minutes
        with none are left out."""
        ...

    async def report_worker(self, report: WorkerReport) -> None:
        """Insert or replace the report of ``report.id``; forgets workers unseen
        for a day before ``report.seen_at``."""
        ...

    async def workers_seen(self, since: datetime) -> list[WorkerReport]:
        """Workers whose last report is from ``since`` or later, most recent first."""
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

    async def publish(self, body: bytes, *, delay: timedelta | None = None, priority: int = 0) -> None:
        """Return once the broker holds the message durably.

        Of the messages waiting, one with a higher ``priority`` (0 to 9) is
        delivered first, FIFO within a priority; a delayed message keeps its
        priority once due. Priority only orders a backlog: a message that finds
        an idle consumer goes straight to it.
        """
        ...

    def consume(self, prefetch: int) -> AbstractAsyncContextManager[Consumer]:
        """Subscribe; messages left unsettled when the context exits are redelivered."""
        ...


class Consumer(Protocol):
    async def next(self) -> Delivery:
        """Wait for the next delivery."""
        ...

    @property
    def connected(self) -> bool:
        """False while nothing can reach this consumer (the broker connection is
        down, or the broker cancelled the subscription)."""
        ...


class TaskCache(Protocol):
    """Fast status reads. Never the source of truth."""

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


class Clock(Protocol):
    def now(self) -> datetime: ...


class QueueDepths(Protocol):
    """How many messages wait: on the work queue (ready for a consumer) and in
    its dead-letter queue. Failures raise ``QueueUnavailable``."""

    async def depth(self) -> int: ...

    async def dead_letter_depth(self) -> int: ...
