"""Ports of transactional enqueue: a task stored in the caller's own
transaction, and its wake-up once that transaction commits.

An application that keeps its data in the same PostgreSQL can enqueue a task
atomically with its own writes (the outbox problem): the task is a row of the
caller's transaction, so a rollback leaves nothing, and a commit delivers a
notice (PostgreSQL's NOTIFY is sent at commit, and only then) on which one
worker publishes the wake-up at once. A notice that nobody heard is no loss:
the row's outbox column says it was never published, and the sweeper does it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from taskcore.model.task import NewTask
from taskcore.model.uniqueness import Added

Transaction = object
"""The adapter's handle on the caller's open transaction (for PostgreSQL, a
psycopg ``AsyncConnection`` inside ``transaction()``); opaque to the core."""


class TransactionalStore(Protocol):
    async def add_within(self, transaction: Transaction, new: NewTask) -> Added:
        """Store ``new`` inside ``transaction`` (as ``TaskStore.add_unique``
        does, so a unique key's holder is answered) with a notice for when it
        commits; nothing is visible, and nothing runs, unless it commits.
        ``ConfigurationError`` for a handle this adapter cannot use."""
        ...


class CommitNotices(Protocol):
    def committed(self) -> AbstractAsyncContextManager[AsyncIterator[list[int]]]:
        """The ids of tasks enqueued in transactions that committed, as they
        commit, to one listener among all processes at a time (the others
        wait to take over). Iteration raises ``ServiceUnavailable`` when the
        connection is lost; notices sent meanwhile are the sweeper's."""
        ...
