"""Transactional enqueue on PostgreSQL: a task in the caller's transaction, a
NOTIFY that PostgreSQL sends only if it commits, and one listener among the
workers (a session advisory lock on its connection) that hears it."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg

from taskcore.adapters.postgres.errors import wrap_errors
from taskcore.adapters.postgres.inserts import add_in
from taskcore.adapters.postgres.sql import queries
from taskcore.errors import ChangeFeedUnavailable, ConfigurationError
from taskcore.model.task import NewTask
from taskcore.model.uniqueness import Added
from taskcore.ports import Transaction

log = logging.getLogger("taskcore.adapters.postgres")

CHANNEL = "taskcore_committed"
# "commitsx" in ASCII: the key the listening worker holds.
LISTENER_LOCK_KEY = 0x636F6D6D69747378


async def add_within(transaction: Transaction, new: NewTask) -> Added:
    """``TransactionalStore.add_within`` on a psycopg ``AsyncConnection`` (in a
    transaction, or in autocommit, where it commits at once)."""
    if not isinstance(transaction, psycopg.AsyncConnection):
        kind = type(transaction).__name__
        raise ConfigurationError(
            f"a task is enqueued inside a psycopg AsyncConnection's transaction, not a {kind}"
        )
    with wrap_errors("add a task inside the caller's transaction"):
        added = await add_in(transaction, new)
        if added.created:
            await transaction.execute(
                queries["notify_committed"], {"channel": CHANNEL, "id": str(added.task.id)}
            )
    return added


class PostgresCommitNotices:
    """``CommitNotices`` over a connection of its own (not the pool's: it stays
    in LISTEN, and holds the session lock that makes it the one listener)."""

    def __init__(self, conninfo: str, *, connect_timeout_s: float = 5.0) -> None:
        self._conninfo = conninfo
        self._connect_timeout_s = connect_timeout_s

    @asynccontextmanager
    async def committed(self) -> AsyncIterator[AsyncIterator[list[int]]]:
        try:
            with wrap_errors("listen for committed tasks"):
                connection = await psycopg.AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=max(2, math.ceil(self._connect_timeout_s)),
                )
        except Exception as exc:
            raise ChangeFeedUnavailable(f"cannot listen for committed tasks: {exc}") from exc
        try:
            yield self._batches(connection)
        finally:
            await connection.close()  # the session lock goes with it

    async def _batches(
        self, connection: psycopg.AsyncConnection[tuple[object, ...]]
    ) -> AsyncIterator[list[int]]:
        try:
            # Blocks while another worker listens: this one takes over when that one's session ends.
            await connection.execute(queries["take_listener_lock"], {"key": LISTENER_LOCK_KEY})
            await connection.execute(queries["listen_committed"])
            log.info("listening for tasks enqueued in callers' transactions")
            async for notice in connection.notifies():
                ids = [int(part) for part in notice.payload.split(",") if part.isdigit()]
                if ids:
                    yield ids
        except psycopg.Error as exc:
            raise ChangeFeedUnavailable(f"listening for committed tasks stopped: {exc}") from exc
