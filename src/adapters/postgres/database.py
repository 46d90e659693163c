"""The PostgreSQL pools, and the one way a statement is run on them.

``PostgresDatabase`` owns the connection pools (the primary, and a read
replica when one is configured) and their lifecycle: nothing connects until
``open()``. Every adapter module on PostgreSQL (tasks, recovery, dashboard,
workers) runs its named statements from ``queries.sql`` through ``run`` or
``transaction``, which bound each call by the timeout and translate driver
errors at the edge.
"""

from __future__ import annotations

import asyncio
import math
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
    """The pools; ``open()`` before use, ``close()`` after."""

    def __init__(
        self,
        conninfo: str,
        *,
        read_conninfo: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._conninfo = conninfo
        self._read_conninfo = read_conninfo if read_conninfo and read_conninfo != conninfo else None
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout_s = connect_timeout_s
        self._primary, self._read = self._build_pools()

    def _build_pools(self) -> tuple[_Pool, _Pool]:
        """Unopened pools: nothing connects until ``open()``. A closed pool cannot
        be reopened, so ``close()`` and a failed ``open()`` build fresh ones."""
        primary = self._pool(self._conninfo, "taskcore-primary")
        if self._read_conninfo is None:
            return primary, primary
        return primary, self._pool(self._read_conninfo, "taskcore-read")

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

    def _endpoints(self) -> list[tuple[str, _Pool]]:
        if self._read_conninfo is None:
            return [(self._conninfo, self._primary)]
        return [(self._conninfo, self._primary), (self._read_conninfo, self._read)]

    async def open(self) -> None:
        """Connect, or raise ``RepositoryUnavailable`` naming the cause.

        One direct connection first: it fails at once with the server's reason
        (refused, bad password, no such database), where the pool would keep
        retrying until its timeout and then only report the timeout.
        """
        try:
            for conninfo, pool in self._endpoints():
                await self._probe(conninfo)
                with wrap_errors("open the task database pool"):
                    await pool.open(wait=True, timeout=self._connect_timeout_s)
        except BaseException:
            await self.close()
            raise

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

    async def close(self) -> None:
        for _, pool in self._endpoints():
            await pool.close()
        self._primary, self._read = self._build_pools()

    async def ping(self, timeout_s: float = 1.0) -> None:
        """Readiness: every pool hands out a connection that answers ``SELECT 1``
        within ``timeout_s``, or ``RepositoryUnavailable``."""
        try:
            async with asyncio.timeout(timeout_s):
                for _, pool in self._endpoints():
                    with wrap_errors("ping the task database"):
                        async with pool.connection(timeout=timeout_s) as connection:
                            await connection.execute(queries["ping"])
        except TimeoutError as exc:
            raise RepositoryUnavailable(f"the task database did not answer within {timeout_s}s") from exc

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
        it in errors ("cannot <action>: ...")."""
        pool = self._read if replica else self._primary
        return await self._bounded(self._run_now(pool, name, params, action, rows), action)

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
