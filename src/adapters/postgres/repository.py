"""The task repository on PostgreSQL: one statement per use case, over a pool.

Every write goes to the primary; ``get`` and ``find`` may go to a
read replica, which can lag behind: the core only reads there to answer
clients, never to decide a transition. Concurrency is guarded in SQL (the
conditional UPDATEs in ``queries.sql``); the rules themselves live on ``Task``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString, TypeAlias, TypeVar

import msgspec
import psycopg
from psycopg.adapt import AdaptersMap
from psycopg.rows import RowMaker, TupleRow, dict_row
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from taskcore.adapters.postgres.errors import wrap_errors
from taskcore.adapters.postgres.sql import queries
from taskcore.batching import Coalescer
from taskcore.errors import RepositoryUnavailable, ServiceUnavailable, TaskcoreError
from taskcore.idempotency import AddedOnce, IdempotencyKey
from taskcore.presence import WorkerReport
from taskcore.query import TaskQuery
from taskcore.stats import MinuteStats
from taskcore.status import TaskStatus
from taskcore.task import NewTask, Task

_Pool: TypeAlias = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]
T = TypeVar("T")


def _quiet(task: asyncio.Future[Any]) -> None:
    """Collect an abandoned statement's outcome so asyncio does not report it."""
    if not task.cancelled():
        task.exception()


_TIMESTAMPS = ("created_at", "updated_at", "run_at", "lease_until", "started_at", "finished_at")


def _json_loads(data: str | bytes) -> Any:
    return msgspec.json.decode(data)


def _json_adapters() -> AdaptersMap:
    """jsonb through msgspec: faster than the stdlib, and the same encoder the core uses."""
    adapters = AdaptersMap(psycopg.adapters)
    set_json_dumps(msgspec.json.encode, adapters)
    set_json_loads(_json_loads, adapters)
    return adapters


_ADAPTERS = _json_adapters()


def task_row(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[Task]:
    """Rows become ``Task``s inside the cursor, so no raw row leaves the adapter.

    Timestamps arrive in the session's time zone, which is whatever the server
    or database is set to; they are normalised to UTC so callers get the same
    kind of value the system clock gives, whatever the server's setting.
    """
    names = [column.name for column in cursor.description or ()]

    def make(values: Sequence[Any]) -> Task:
        row = dict(zip(names, values, strict=True))
        row["status"] = TaskStatus(row["status"])
        for name in _TIMESTAMPS:
            if row[name] is not None:
                row[name] = row[name].astimezone(UTC)
        return Task(**row)

    return make


MAX_BIGINT = 2**63 - 1


class PostgresRepository:
    """``TaskRepository`` on PostgreSQL; ``open()`` before use, ``close()`` after."""

    def __init__(
        self,
        conninfo: str,
        *,
        read_conninfo: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 5.0,
        batch_linger_s: float = 0.0,
    ) -> None:
        """``batch_linger_s``: how long concurrent adds, claims and verdicts
        wait for company under load before their statement goes (``taskcore.batching``)."""
        self._conninfo = conninfo
        self._read_conninfo = read_conninfo if read_conninfo and read_conninfo != conninfo else None
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout_s = connect_timeout_s
        self._primary, self._read = self._build_pools()
        linger = batch_linger_s
        self._adds: Coalescer[NewTask, Task] = Coalescer(
            self._add_batch, linger_s=linger, name="taskcore-add-tasks"
        )
        self._saves: Coalescer[Task, bool] = Coalescer(
            self._save_batch, linger_s=linger, name="taskcore-save-tasks"
        )
        self._claims: Coalescer[tuple[int, datetime, timedelta], Task | None] = Coalescer(
            self._claim_batch, linger_s=linger, name="taskcore-claim-tasks"
        )

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

    def _conninfos(self) -> list[str]:
        return [self._conninfo] if self._read_conninfo is None else [self._conninfo, self._read_conninfo]

    def _pools(self) -> list[_Pool]:
        return [self._primary] if self._read is self._primary else [self._primary, self._read]

    async def open(self) -> None:
        """Connect, or raise ``RepositoryUnavailable`` naming the cause.

        One direct connection first: it fails at once with the server's reason
        (refused, bad password, no such database), where the pool would keep
        retrying until its timeout and then only report the timeout.
        """
        try:
            for conninfo, pool in zip(self._conninfos(), self._pools(), strict=True):
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
        for pool in self._pools():
            await pool.close()
        self._primary, self._read = self._build_pools()

    async def ping(self, timeout_s: float = 1.0) -> None:
        """Readiness: every pool hands out a connection that answers ``SELECT 1``
        within ``timeout_s``, or ``RepositoryUnavailable``."""
        try:
            async with asyncio.timeout(timeout_s):
                for pool in self._pools():
                    with wrap_errors("ping the task database"):
                        async with pool.connection(timeout=timeout_s) as connection:
                            await connection.execute(queries["ping"])
        except TimeoutError as exc:
            raise RepositoryUnavailable(f"the task database did not answer within {timeout_s}s") from exc

    @staticmethod
    def _add_params(new: NewTask) -> dict[str, Any]:
        return {
            "type": new.type,
            "input": Jsonb(new.input),
            "max_attempts": new.max_attempts,
            "created_at": new.created_at,
            "run_at": new.run_at,
            "owner": new.owner,
            "priority": new.priority,
        }

    async def add(self, new: NewTask) -> Task:
        return await self._adds.call(new)

    async def _add_batch(self, news: list[NewTask]) -> list[Task | BaseException]:
        """Concurrent adds as one INSERT. If the batch is refused for the data
        of one of its tasks (a value PostgreSQL cannot store), each task is
        added on its own, so only that one fails."""
        if len(news) == 1:
            return [await self._add_one(news[0])]
        params = {
            "types": [new.type for new in news],
            "inputs": [Jsonb(new.input) for new in news],
            "max_attempts": [new.max_attempts for new in news],
            "created_at": [new.created_at for new in news],
            "run_at": [new.run_at for new in news],
            "owners": [new.owner for new in news],
            "priorities": [new.priority for new in news],
        }
        try:
            return list(await self._fetch(self._primary, "add_tasks", params, f"add {len(news)} tasks"))
        except ServiceUnavailable:
            raise
        except TaskcoreError:
            return list(await asyncio.gather(*(self._add_one(new) for new in news), return_exceptions=True))

    async def _add_one(self, new: NewTask) -> Task:
        tasks = await self._fetch(self._primary, "add_task", self._add_params(new), "add a task")
        return tasks[0]

    async def add_once(self, new: NewTask, key: IdempotencyKey) -> AddedOnce:
        action = "add a task under an idempotency key"
        return await self._bounded(self._add_once_now(new, key, action), action)

    async def _add_once_now(self, new: NewTask, key: IdempotencyKey, action: str) -> AddedOnce:
        slot = {"owner": new.owner or "", "key": key.key}
        with wrap_errors(action):
            async with self._primary.connection() as connection, connection.transaction():
                claimed = await connection.execute(
                    queries["claim_idempotency_key"],
                    {**slot, "request_hash": key.request_hash, "now": new.created_at,
                     "expired_before": key.expired_before},
                )  # fmt: skip
                if await claimed.fetchone() is None:
                    used = await (await connection.execute(queries["get_idempotency_key"], slot)).fetchone()
                    if used is None or used[1] is None:  # expired and purged meanwhile: rare, retryable
                        raise RepositoryUnavailable("the idempotency key changed concurrently; try again")
                    async with connection.cursor(row_factory=task_row) as cursor:
                        await cursor.execute(queries["get_task"], {"id": used[1]})
                        original = await cursor.fetchone()
                    if original is None:
                        raise RepositoryUnavailable("the idempotency key's task is gone; try again")
                    return AddedOnce(original, created=False, request_hash=used[0])
                async with connection.cursor(row_factory=task_row) as cursor:
                    await cursor.execute(queries["add_task"], self._add_params(new))
                    task = await cursor.fetchone()
                assert task is not None
                await connection.execute(queries["link_idempotency_key"], {**slot, "task_id": task.id})
                return AddedOnce(task, created=True, request_hash=key.request_hash)

    async def get(self, task_id: int, *, fresh: bool = False) -> Task | None:
        pool = self._primary if fresh else self._read
        tasks = await self._fetch(pool, "get_task", {"id": task_id}, f"read task {task_id}")
        return tasks[0] if tasks else None

    async def claim(self, task_id: int, now: datetime, lease: timedelta) -> Task | None:
        return await self._claims.call((task_id, now, lease))

    async def _claim_batch(self, claims: list[tuple[int, datetime, timedelta]]) -> list[Task | None]:
        """Concurrent claims as one UPDATE, at the latest of their clock readings.
        The lease end is computed as Task.claim computes it (in SQL, adding an
        interval with days follows the session time zone's calendar across DST).
        Of two claims of one task in a batch, the first gets it, as the row
        lock would decide between two statements."""
        now = max(claimed_at for _, claimed_at, _ in claims)
        params = {
            # An id beyond bigint names no task (a poison message can carry one);
            # in the array it would fail the whole batch's cast.
            "ids": list({task_id for task_id, _, _ in claims if task_id <= MAX_BIGINT}),
            "now": now,
            "lease_until": max(now + lease for _, _, lease in claims),
        }
        claimed = await self._fetch(self._primary, "claim_tasks", params, f"claim {len(claims)} tasks")
        by_id = {task.id: task for task in claimed}
        return [by_id.pop(task_id, None) for task_id, _, _ in claims]

    @staticmethod
    def _save_params(task: Task) -> dict[str, Any]:
        return {
            "id": task.id,
            "status": task.status.value,
            # A missing result is SQL NULL, so ``result IS NULL`` means "none" in ad hoc queries.
            "result": None if task.result is None else Jsonb(task.result),
            "error": task.error,
            "attempts": task.attempts,
            "run_at": task.run_at,
            "lease_until": task.lease_until,
            "started_at": task.started_at,
            "finished_at": task.finished_at,
            "updated_at": task.updated_at,
            "version": task.version,
        }

    async def save(self, task: Task) -> bool:
        return await self._saves.call(task)

    async def _save_one(self, task: Task) -> bool:
        return await self._execute("save_task", self._save_params(task), f"save task {task.id}") == 1

    async def _save_batch(self, tasks: list[Task]) -> list[bool | BaseException]:
        """Concurrent saves as few UPDATEs as their ids allow: a task saved twice
        in one batch goes in a later statement, so its second transition sees
        the first one's version, as two statements in a row would. A statement
        refused for one task's data is retried task by task."""
        outcomes: list[bool | BaseException] = [False] * len(tasks)
        remaining = list(range(len(tasks)))
        while remaining:
            seen: set[int] = set()
            now: list[int] = []
            later: list[int] = []
            for index in remaining:
                (later if tasks[index].id in seen else now).append(index)
                seen.add(tasks[index].id)
            batch = [tasks[index] for index in now]
            if len(batch) == 1:
                results: list[bool | BaseException] = [await self._save_one(batch[0])]
            else:
                try:
                    saved = await self._save_many(batch)
                    results = [task.id in saved for task in batch]
                except ServiceUnavailable:
                    raise
                except TaskcoreError:
                    results = list(
                        await asyncio.gather(
                            *(self._save_one(task) for task in batch), return_exceptions=True
                        )
                    )
            for index, result in zip(now, results, strict=True):
                outcomes[index] = result
            remaining = later
        return outcomes

    async def _save_many(self, tasks: list[Task]) -> set[int]:
        rows = [self._save_params(task) for task in tasks]
        params = {
            "ids": [row["id"] for row in rows],
            "statuses": [row["status"] for row in rows],
            "results": [row["result"] for row in rows],
            "errors": [row["error"] for row in rows],
            "attempts": [row["attempts"] for row in rows],
            "run_at": [row["run_at"] for row in rows],
            "lease_until": [row["lease_until"] for row in rows],
            "started_at": [row["started_at"] for row in rows],
            "finished_at": [row["finished_at"] for row in rows],
            "updated_at": [row["updated_at"] for row in rows],
            "versions": [row["version"] for row in rows],
        }
        saved = await self._tuples("save_tasks", params, f"save {len(tasks)} tasks")
        return {row[0] for row in saved}

    async def renew_lease(self, task_id: int, version: int, lease_until: datetime) -> bool:
        params = {"id": task_id, "version": version, "lease_until": lease_until}
        return await self._execute("renew_lease", params, f"renew the lease of task {task_id}") == 1

    async def mark_dispatched(self, task_ids: Sequence[int], at: datetime) -> None:
        if task_ids:
            await self._execute("mark_dispatched", {"ids": list(task_ids), "at": at}, "mark tasks dispatched")

    async def lapsed(self, now: datetime, limit: int) -> list[Task]:
        params = {"now": now, "limit": limit}
        return await self._fetch(self._primary, "lapsed_tasks", params, "find lapsed leases")

    async def forget_idempotency_keys(self, used_before: datetime, limit: int) -> int:
        params = {"used_before": used_before, "limit": limit}
        return await self._execute("forget_idempotency_keys", params, "forget expired idempotency keys")

    async def undispatched(
        self, *, unconfirmed_before: datetime, overdue_before: datetime, limit: int
    ) -> list[Task]:
        params = {"unconfirmed_before": unconfirmed_before, "overdue_before": overdue_before, "limit": limit}
        return await self._fetch(self._primary, "undispatched_tasks", params, "find undispatched tasks")

    async def _execute(self, query: str, params: Mapping[str, Any], action: str) -> int:
        return await self._bounded(self._execute_now(queries[query], params, action), action)

    async def _execute_now(self, statement: LiteralString, params: Mapping[str, Any], action: str) -> int:
        with wrap_errors(action):
            async with self._primary.connection() as connection:
                cursor = await connection.execute(statement, params)
                return cursor.rowcount

    async def _tuples(self, query: str, params: Mapping[str, Any], action: str) -> list[TupleRow]:
        """Rows of a statement on the primary (a write's RETURNING)."""
        return await self._bounded(self._tuples_now(queries[query], params, action), action)

    async def _tuples_now(
        self, statement: LiteralString, params: Mapping[str, Any], action: str
    ) -> list[TupleRow]:
        with wrap_errors(action):
            async with self._primary.connection() as connection:
                cursor = await connection.execute(statement, params)
                return await cursor.fetchall()

    async def find(self, query: TaskQuery) -> list[Task]:
        before_created, before_id = query.before if query.before else (None, None)
        params = {
            "owner": query.owner,
            "status": query.status.value if query.status else None,
            "type": query.type,
            "before_created": before_created,
            "before_id": before_id,
            "limit": query.limit,
        }
        return await self._fetch(self._read, "list_tasks", params, "list tasks")

    async def _fetch(self, pool: _Pool, query: str, params: Mapping[str, Any], action: str) -> list[Task]:
        return await self._bounded(self._fetch_now(pool, queries[query], params, action), action)

    async def _fetch_now(
        self, pool: _Pool, statement: LiteralString, params: Mapping[str, Any], action: str
    ) -> list[Task]:
        with wrap_errors(action):
            async with pool.connection() as connection, connection.cursor(row_factory=task_row) as cursor:
                await cursor.execute(statement, params)
                return await cursor.fetchall()

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

    # The dashboard's reads and the workers' reports (taskcore.stats, taskcore.presence).

    async def status_counts(self, owner: str | None) -> dict[TaskStatus, int]:
        if owner is None:
            rows = await self._rows("status_counts", {}, "count tasks by status")
        else:
            rows = await self._rows("status_counts_of_owner", {"owner": owner}, "count tasks by status")
        return {TaskStatus(row["status"]): row["tasks"] for row in rows}

    async def minute_stats(self, since: datetime, owner: str | None) -> list[MinuteStats]:
        rows = await self._rows("minute_stats", {"since": since, "owner": owner}, "read the minute stats")
        return [MinuteStats(**{**row, "minute": row["minute"].astimezone(UTC)}) for row in rows]

    async def report_worker(self, report: WorkerReport) -> None:
        await self._execute("report_worker", msgspec.structs.asdict(report), f"report worker {report.id}")

    async def workers_seen(self, since: datetime) -> list[WorkerReport]:
        rows = await self._rows("workers_seen", {"since": since}, "list the workers seen")
        utc = ("started_at", "seen_at")
        return [WorkerReport(**{**row, **{name: row[name].astimezone(UTC) for name in utc}}) for row in rows]

    async def _rows(self, query: str, params: Mapping[str, Any], action: str) -> list[dict[str, Any]]:
        """Plain rows as dicts, from the read pool: for reads that answer people, not decisions."""
        return await self._bounded(self._rows_now(queries[query], params, action), action)

    async def _rows_now(
        self, statement: LiteralString, params: Mapping[str, Any], action: str
    ) -> list[dict[str, Any]]:
        with wrap_errors(action):
            async with (
                self._read.connection() as connection,
                connection.cursor(row_factory=dict_row) as cursor,
            ):
                await cursor.execute(statement, params)
                return await cursor.fetchall()
