"""The PostgreSQL pools, and the one way a statement is run on them.

``PostgresDatabase`` owns the connection pools (the primary, and a read
replica when one is configured) and their lifecycle: nothing connects until
``open()``. Every adapter module on PostgreSQL (tasks, recovery, dashboard,
workers) runs its named statements from ``queries.sql`` through ``run`` or
``transaction``, which bound each call by the timeout and translate driver
errors at the edge.

The replica is a convenience, never a requirement: its reads only answer
people, and the primary can always answer them too. So while it is away
(stopped, crashed, unreachable) its reads go to the primary, without an error
and without waiting on it again for every request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeAlias, TypeVar, overload

import msgspec
import psycopg
from psycopg.adapt import AdaptersMap
from psycopg.rows import AsyncRowFactory, TupleRow
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from taskcore.adapters.postgres.errors import wrap_errors
from taskcore.adapters.postgres.sql import queries
from taskcore.errors import RepositoryUnavailable

log = logging.getLogger("taskcore.adapters.postgres")

Connection: TypeAlias = psycopg.AsyncConnection[TupleRow]
_Pool: TypeAlias = AsyncConnectionPool[Connection]
R = TypeVar("R")
T = TypeVar("T")


def _quiet(task: asyncio.Future[Any]) -> None:
    """Collect an abandoned statement's outcome so asyncio does not report it."""
    if not task.cancelled():
        task.exception()


def _json_loads(data: str | bytes) -> Any:
    return msgspec.json.decode(data)


def _json_adapters() -> AdaptersMap:
    """jsonb through msgspec: faster than the stdlib, and the same encoder the core uses."""
    adapters = AdaptersMap(psycopg.adapters)
    set_json_dumps(msgspec.json.encode, adapters)
    set_json_loads(_json_loads, adapters)
    return adapters


_ADAPTERS = _json_adapters()


class PostgresDatabase:
    """The pools; ``open()`` before use, ``close()`` after.

    With a read replica, ``replica=True`` reads go to it while it answers. One
    that fails as ``RepositoryUnavailable`` (refused, timed out, the pool
    empty) is run again on the primary at once, and the replica is left alone
    for ``replica_retry_s``: its pool is closed, and the first replica read
    after that starts a reconnection in the background while the reads keep
    going to the primary: only the read that meets the outage waits on the
    replica. Once a fresh pool is open, reads go to it again. One warning per
    outage, not per request. ``open()`` does not need the replica either: it
    warns, and the reads start on the primary.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        read_conninfo: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 5.0,
        replica_retry_s: float = 5.0,
    ) -> None:
        self._conninfo = conninfo
        self._read_conninfo = read_conninfo if read_conninfo and read_conninfo != conninfo else None
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout_s = connect_timeout_s
        self._replica_retry_s = replica_retry_s
        # Unopened: nothing connects until ``open()``. A closed pool cannot be
        # reopened, so ``close()`` builds a fresh one.
        self._primary = self._pool(conninfo, "taskcore-primary")
        self._replica: _Pool | None = None  # open and answering; None while away (or none configured)
        self._open = False
        self._replica_retry_at = 0.0  # time.monotonic() when an away replica is tried again
        self._reconnecting: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def has_replica(self) -> bool:
        return self._read_conninfo is not None

    def _pool(self, conninfo: str, name: str) -> _Pool:
        return AsyncConnectionPool(
            conninfo,
            min_size=self._min_size,
            max_size=self._max_size,
            name=name,
            timeout=self._connect_timeout_s,
            open=False,
            kwargs={
                # Each method is one statement: autocommit saves the BEGIN/COMMIT round trips.
                "autocommit": True,
                "context": _ADAPTERS,
                "connect_timeout": max(2, math.ceil(self._connect_timeout_s)),
            },
        )

    async def open(self) -> None:
        """Connect to the primary, or raise ``RepositoryUnavailable`` naming the
        cause; then to the replica, if any, which may be away (see the class)."""
        try:
            await self._open_pool(self._conninfo, self._primary)
            self._open = True
            if self._read_conninfo is not None and (failure := await self._connect_replica()):
                log.warning("read replica unavailable at start, reading from the primary: %s", failure)
        except BaseException:
            await self.close()
            raise

    async def _open_pool(self, conninfo: str, pool: _Pool) -> None:
        """One direct connection first: it fails at once with the server's reason
        (refused, bad password, no such database), where the pool would keep
        retrying until its timeout and then only report the timeout."""
        await self._probe(conninfo)
        with wrap_errors("open the task database pool"):
            await pool.open(wait=True, timeout=self._connect_timeout_s)

    async def _probe(self, conninfo: str) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                with wrap_errors("connect to the task database"):
                    connection = await psycopg.AsyncConnection.connect(
                        conninfo, connect_timeout=max(2, math.ceil(self._connect_timeout_s))
                    )
                    await connection.close()
        except TimeoutError as exc:
            raise RepositoryUnavailable(
                f"cannot connect to the task database: no answer within {self._connect_timeout_s}s"
            ) from exc

    async def _connect_replica(self) -> RepositoryUnavailable | None:
        """Open a fresh pool on the replica and read from it; or say why not, and
        leave the replica alone for ``replica_retry_s``. Fresh, because the
        old pool's connections died with the server, and a pool only finds
        that out one request at a time."""
        assert self._read_conninfo is not None
        self._replica_retry_at = time.monotonic() + self._replica_retry_s  # whatever happens next
        pool = self._pool(self._read_conninfo, "taskcore-read")
        try:
            await self._open_pool(self._read_conninfo, pool)
        except RepositoryUnavailable as exc:
            await pool.close()
            return exc
        except BaseException:
            await pool.close()
            raise
        self._replica = pool
        return None

    async def _reconnect_replica(self) -> None:
        try:
            failure = await self._connect_replica()
        except Exception:  # nobody awaits this task: say it here
            log.exception("reconnecting to the read replica failed")
            return
        finally:
            self._reconnecting = None
        if failure is None:
            log.info("read replica answers again: reads go to it")
        else:
            log.debug("read replica still unavailable: %s", failure)

    def _replica_pool(self) -> _Pool | None:
        """The replica's pool while it answers. While it is away ``None``, and
        once ``replica_retry_s`` has passed, a reconnection in the background."""
        if (
            self._replica is None
            and self._read_conninfo is not None
            and self._open
            and self._reconnecting is None
            and time.monotonic() >= self._replica_retry_at
        ):
            self._reconnecting = asyncio.ensure_future(self._reconnect_replica())
        return self._replica

    def _replica_failed(self, pool: _Pool, failure: RepositoryUnavailable) -> None:
        if pool is not self._replica:
            return  # a read that started before the outage was noticed
        self._replica = None
        self._replica_retry_at = time.monotonic() + self._replica_retry_s
        log.warning("read replica unavailable, reading from the primary until it answers: %s", failure)
        closing = asyncio.ensure_future(pool.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        closing.add_done_callback(_quiet)

    async def close(self) -> None:
        self._open = False
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            await asyncio.wait({self._reconnecting})
            self._reconnecting = None
        replica, self._replica = self._replica, None
        for pool in (self._primary, replica):
            if pool is not None:
                await pool.close()
        if self._closing:
            await asyncio.wait(set(self._closing))
        self._primary = self._pool(self._conninfo, "taskcore-primary")
        self._replica_retry_at = 0.0

    async def ping(self, timeout_s: float = 1.0) -> None:
        """Readiness: the primary hands out a connection that answers ``SELECT 1``
        within ``timeout_s``, or ``RepositoryUnavailable``. The replica is
        reported apart (``ping_replica``): reads do without it."""
        await self._ping(self._primary, timeout_s, "the task database")

    async def ping_replica(self, timeout_s: float = 1.0) -> None:
        """The replica answers ``SELECT 1`` within ``timeout_s``; or
        ``RepositoryUnavailable`` while it is away and reads go to the primary."""
        pool = self._replica_pool()
        if pool is None:
            raise RepositoryUnavailable("the read replica is away: reads go to the primary")
        await self._ping(pool, timeout_s, "the read replica")

    async def _ping(self, pool: _Pool, timeout_s: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                with wrap_errors(f"ping {what}"):
                    async with pool.connection(timeout=timeout_s) as connection:
                        await connection.execute(queries["ping"])
        except TimeoutError as exc:
            raise RepositoryUnavailable(f"{what} did not answer within {timeout_s}s") from exc

    @overload
    async def run(
        self,
        name: str,
        params: Mapping[str, Any],
        *,
        action: str,
        rows: AsyncRowFactory[R],
        replica: bool = False,
    ) -> list[R]: ...

    @overload
    async def run(
        self, name: str, params: Mapping[str, Any], *, action: str, rows: None = None, replica: bool = False
    ) -> int: ...

    async def run(
        self,
        name: str,
        params: Mapping[str, Any],
        *,
        action: str,
        rows: AsyncRowFactory[R] | None = None,
        replica: bool = False,
    ) -> list[R] | int:
        """Run the statement ``name`` of ``queries.sql``: its rows made by
        ``rows``, or without ``rows`` the number of rows it touched.
        ``replica`` may read from the read replica (which can lag), for reads
        that answer people rather than decide a transition. ``action`` names
        it in errors ("cannot <action>: ..."). A replica read that finds the
        replica away is run on the primary (see the class)."""
        if replica and (pool := self._replica_pool()) is not None:
            try:
                return await self._bounded(self._run_now(pool, name, params, action, rows), action)
            except RepositoryUnavailable as exc:
                self._replica_failed(pool, exc)
        return await self._bounded(self._run_now(self._primary, name, params, action, rows), action)

    async def _run_now(
        self,
        pool: _Pool,
        name: str,
        params: Mapping[str, Any],
        action: str,
        rows: AsyncRowFactory[R] | None,
    ) -> list[R] | int:
        with wrap_errors(action):
            async with pool.connection() as connection:
                if rows is None:
                    return (await connection.execute(queries[name], params)).rowcount
                async with connection.cursor(row_factory=rows) as cursor:
                    await cursor.execute(queries[name], params)
                    return await cursor.fetchall()

    async def transaction(self, work: Callable[[Connection], Awaitable[T]], *, action: str) -> T:
        """``work`` on one primary connection inside a transaction, bounded and
        with errors translated like ``run``: for a use case of several statements."""
        return await self._bounded(self._transaction_now(work, action), action)

    async def _transaction_now(self, work: Callable[[Connection], Awaitable[T]], action: str) -> T:
        with wrap_errors(action):
            async with self._primary.connection() as connection, connection.transaction():
                return await work(connection)

    async def _bounded(self, operation: Coroutine[Any, Any, T], action: str) -> T:
        """Bound every call by the timeout. A server that stops answering without
        closing the connection (a partition, a hung host) would otherwise hold
        the caller until TCP gives up, minutes later. The statement is
        cancelled in the background: psycopg then spends up to seconds asking
        the server to cancel it, which the caller must not wait for."""
        running = asyncio.ensure_future(operation)
        try:
            done, _ = await asyncio.wait({running}, timeout=self._connect_timeout_s)
        except asyncio.CancelledError:
            running.cancel()
            raise
        if done:
            return running.result()
        running.cancel()
        running.add_done_callback(_quiet)
        raise RepositoryUnavailable(f"cannot {action}: no answer within {self._connect_timeout_s:g} s")


class ReadReplica:
    """The read replica as readiness reports it (``postgres-replica``): by name,
    never as a reason to be unready, since reads go to the primary while it is
    away. Its pool opens and closes with the database's."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._database = database

    async def open(self) -> None:
        """Nothing to do: ``PostgresDatabase.open()`` connects the replica."""

    async def close(self) -> None:
        """Nothing to do: ``PostgresDatabase.close()`` closes the replica's pool."""

    async def ping(self) -> None:
        await self._database.ping_replica()
