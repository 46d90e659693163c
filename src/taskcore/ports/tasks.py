"""Ports onto the task table, one per caller.

Each Protocol is what one use case needs and nothing more: the submit path
stores and reads tasks, the transition writer saves transitions, the worker
claims and renews attempts, the sweeper finds work that fell through the
cracks. One adapter class may implement several of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from taskcore.model.idempotency import AddedOnce, IdempotencyKey
from taskcore.model.query import TaskQuery
from taskcore.model.task import NewTask, Task
from taskcore.model.uniqueness import Added


class TaskReader(Protocol):
    async def get(self, task_id: int, *, fresh: bool = False) -> Task | None:
        """Read a task. Reads may be served by a lagging replica; ``fresh`` asks
        the primary, for decisions that must see the latest write."""
        ...


class TaskFinder(Protocol):
    async def find(self, query: TaskQuery, *, fresh: bool = False) -> list[Task]:
        """Tasks matching ``query``, newest first by (created_at, id), at most
        ``query.limit``. Listings may be served by a lagging replica; ``fresh``
        reads the primary, for a bulk action about to change what it finds."""
        ...


class TaskStore(TaskReader, Protocol):
    """The submit path: store new tasks, read them back."""

    async def add(self, new: NewTask) -> Task:
        """Store a PENDING task and return it with its id. If ``new`` has a
        unique key that an unfinished task holds, ``UniqueKeyTaken`` (use
        ``add_unique`` to get that task instead)."""
        ...

    async def add_unique(self, new: NewTask) -> Added:
        """Store ``new``, unless an unfinished task of its type and owner has
        its unique key: then return that task (``created`` false). Atomic, so
        concurrent adds of one key store one task; a key whose holder
        finishes meanwhile is free, and ``new`` is stored."""
        ...

    async def add_once(self, new: NewTask, key: IdempotencyKey) -> AddedOnce:
        """Store ``new`` unless ``new.owner`` used ``key`` before (and it has not
        expired): then return what that use gave (``replayed``). A unique key
        is honoured as ``add_unique`` does (``deduplicated``), and the key
        remembers it. Atomic, so concurrent duplicates create one task."""
        ...


class TransitionStore(Protocol):
    async def save(self, task: Task) -> bool:
        """Persist a transition produced by a ``Task`` method.

        Lands only if the stored row still has ``task.version - 1``: a writer
        that lost a race (its lease lapsed, the task was cancelled) gets
        ``False`` and changes nothing. A task saved as PENDING needs a new
        message: its confirmation is cleared until ``mark_dispatched``. A
        finished task that would hold its unique key again (a retry) while
        another unfinished task holds it raises ``UniqueKeyTaken``.
        """
        ...


class DispatchLog(Protocol):
    async def mark_dispatched(self, confirmed: Sequence[tuple[int, datetime]]) -> None:
        """Record that the broker confirmed these PENDING tasks' messages: each
        task id with when its message was confirmed. The tasks one message
        wakes share its time, which is how the wake-up census counts messages."""
        ...


class AttemptStore(TaskReader, Protocol):
    """The worker: start attempts and keep them alive."""

    async def claim(
        self, task_id: int, now: datetime, lease: timedelta, *, alone: bool = False
    ) -> Task | None:
        """Atomically apply ``Task.claim`` if the task is PENDING and due, not
        ``suspect`` unless the attempt runs ``alone``, its queue is not
        paused, and its limits (``model/limits.py``) let it start now.

        The answer is the task as the claim left it: PROCESSING when claimed;
        PENDING when its rate limit deferred it (``Task.defer``: ``run_at``
        pushed to the start reserved for it, its wake-up to be published for
        then, as a transition back to PENDING needs). ``None`` means nothing
        was claimed nor changed: the id is unknown, the task is not PENDING (a
        duplicate delivery, a cancelled task), not due yet, suspect, paused,
        or parked by its concurrency limit until a running one of its key
        ends (``ConcurrencySlots.wake``).
        """
        ...

    async def renew_lease(self, task_id: int, version: int, lease_until: datetime) -> bool:
        """Extend a running attempt's lease; ``False`` once the task is no
        longer this attempt's (cancelled, released, finished)."""
        ...


class RecoveryStore(Protocol):
    """The sweeper: work that fell through the cracks, and keys past their time."""

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
