"""Task statements on PostgreSQL: store, read, claim, renew and save transitions.

Implements the core's ``TaskStore``, ``TaskFinder``, ``AttemptStore``,
``TransitionStore`` and ``DispatchLog``. Every write goes to the primary;
``get`` and ``find`` may go to a read replica, which can lag behind: the core
only reads there to answer clients, never to decide a transition.
Concurrency is guarded in SQL (the conditional UPDATEs in ``queries.sql``);
the rules themselves live on ``Task``.

Concurrent adds, claims and saves are coalesced into one statement each
(``taskcore.batching``), which is where most of the throughput
under load comes from; the INSERTs, and unique keys, are ``inserts.py``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import msgspec
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from taskcore.adapters.postgres.database import Connection, PostgresDatabase
from taskcore.adapters.postgres.inserts import TaskInserts, add_all_in, add_in, one_task
from taskcore.adapters.postgres.limits import PostgresLimitedClaims
from taskcore.adapters.postgres.rows import task_row
from taskcore.adapters.postgres.sql import queries
from taskcore.adapters.postgres.transactional import add_within
from taskcore.batching import Coalescer
from taskcore.errors import RepositoryUnavailable, ServiceUnavailable, TaskcoreError
from taskcore.model.idempotency import AddedOnce, IdempotencyKey
from taskcore.model.limits import LimitsOf, no_limits
from taskcore.model.query import TaskQuery
from taskcore.model.task import MAX_TASK_ID, NewTask, Task
from taskcore.model.uniqueness import Added, UniqueKeyTaken
from taskcore.ports import Transaction

Claim = tuple[int, datetime, timedelta, bool]  # task id, now, lease, alone


class _SavedRow(msgspec.Struct):
    """One row of ``save_tasks``, as its JSON document carries it (``jsonb_to_recordset``)."""

    id: int
    status: str
    result: Any  # JSON null is SQL NULL there: "none", as ``save_task`` stores it
    error: str | None
    attempts: int
    run_at: datetime
    lease_until: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    version: int
    alone: bool
    suspect: bool
    blocked: bool
    progress: float | None
    progress_message: str | None
    progress_at: datetime | None
    attempt_log: Any


def _saved_row(task: Task) -> _SavedRow:
    return _SavedRow(
        id=task.id,
        status=task.status.value,
        result=task.result,
        error=task.error,
        attempts=task.attempts,
        run_at=task.run_at,
        lease_until=task.lease_until,
        started_at=task.started_at,
        finished_at=task.finished_at,
        updated_at=task.updated_at,
        version=task.version,
        alone=task.alone,
        suspect=task.suspect,
        blocked=task.blocked,
        progress=task.progress,
        progress_message=task.progress_message,
        progress_at=task.progress_at,
        attempt_log=task.attempt_log,
    )


def _save_params(task: Task) -> dict[str, Any]:
    """``save_task``'s parameters: the same row, its JSON values adapted one by one."""
    params = msgspec.structs.asdict(_saved_row(task))
    # A missing result is SQL NULL, so ``result IS NULL`` means "none" in ad hoc queries.
    params["result"] = None if task.result is None else Jsonb(task.result)
    params["attempt_log"] = Jsonb(task.attempt_log)
    return params


def _save_rows(batch: list[Task]) -> str:
    """The verdicts of ``batch`` as one JSON array, encoded in one call."""
    return _ENCODER.encode([_saved_row(task) for task in batch]).decode()


_ENCODER = msgspec.json.Encoder()


class PostgresTasks:
    def __init__(
        self,
        database: PostgresDatabase,
        *,
        batch_linger_s: float = 0.0,
        limits: LimitsOf = no_limits,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``batch_linger_s``: how long concurrent adds, claims and verdicts
        wait for company under load before their statement goes
        (``taskcore.batching``); ``limits``: each type's concurrency
        and rate limits, as the claim applies them (``clock``: see ``limits.py``)."""
        self._db = database
        self._limited = PostgresLimitedClaims(database, limits, clock)
        linger = batch_linger_s
        self._adds: Coalescer[NewTask, Added] = Coalescer(
            TaskInserts(database).add_batch, linger_s=linger, name="taskcore-add-tasks"
        )
        self._saves: Coalescer[Task, bool] = Coalescer(
            self._save_batch, linger_s=linger, name="taskcore-save-tasks"
        )
        self._claims: Coalescer[Claim, Task | None] = Coalescer(
            self._claim_batch, linger_s=linger, name="taskcore-claim-tasks"
        )

    async def add(self, new: NewTask) -> Task:
        added = await self.add_unique(new)
        if not added.created:
            raise UniqueKeyTaken.adding(new.type, new.unique_key)
        return added.task

    async def add_unique(self, new: NewTask) -> Added:
        if new.after:  # kept from being deleted until it is stored: a transaction of its own
            return await self._db.transaction(partial(add_in, new=new), action="add a task")
        return await self._adds.call(new)

    async def add_many(self, news: Sequence[NewTask]) -> list[Added]:
        return await self._db.transaction(
            partial(add_all_in, news=news), action=f"add a batch of {len(news)} tasks"
        )

    async def add_within(self, transaction: Transaction, new: NewTask) -> Added:
        return await add_within(transaction, new)

    async def add_once(self, new: NewTask, key: IdempotencyKey) -> AddedOnce:
        async def add(connection: Connection) -> AddedOnce:
            return await _add_once_in(connection, new, key)

        return await self._db.transaction(add, action="add a task under an idempotency key")

    async def get(self, task_id: int, *, fresh: bool = False) -> Task | None:
        tasks = await self._db.run(
            "get_task", {"id": task_id}, action=f"read task {task_id}", rows=task_row, replica=not fresh
        )
        return tasks[0] if tasks else None

    async def find(self, query: TaskQuery, *, fresh: bool = False) -> list[Task]:
        before_created, before_id = query.before if query.before else (None, None)
        params = {
            "owner": query.owner,
            "status": query.status.value if query.status else None,
            "statuses": None if query.statuses is None else sorted(status.value for status in query.statuses),
            "type": query.type,
            "queue": query.queue,
            "tags": list(query.tags),
            "created_after": query.created_after,
            "created_before": query.created_before,
            "before_created": before_created,
            "before_id": before_id,
            "limit": query.limit,
        }
        return await self._db.run("list_tasks", params, action="list tasks", rows=task_row, replica=not fresh)

    async def claim(
        self, task_id: int, now: datetime, lease: timedelta, *, alone: bool = False
    ) -> Task | None:
        return await self._claims.call((task_id, now, lease, alone))

    async def _claim_batch(self, claims: list[Claim]) -> list[Task | None]:
        """Concurrent claims as one UPDATE, at the latest of their clock readings.
        The lease end is computed as Task.claim computes it (in SQL, adding an
        interval with days follows the session time zone's calendar across DST).
        Of two claims of one task in a batch, the first gets it, as the row
        lock would decide between two statements (the one that runs it alone,
        if either does)."""
        now = max(claimed_at for _, claimed_at, _, _ in claims)
        # An id beyond bigint names no task; in the array it would fail the whole batch's cast.
        valid = [claim for claim in claims if claim[0] <= MAX_TASK_ID]
        ids = list({task_id for task_id, _, _, _ in valid})
        params = {
            "ids": ids,
            "alone": list({task_id for task_id, _, _, alone in valid if alone}),
            "now": now,
            "lease_until": max(now + lease for _, _, lease, _ in claims),
        }
        claimed = await self._db.run(
            "claim_tasks", params, action=f"claim {len(claims)} tasks", rows=task_row
        )
        by_id = {task.id: task for task in claimed}
        if len(by_id) < len(ids):
            await self._claim_limited(claims, by_id, now)
        # A task claimed alone goes to the claim that runs it alone.
        return [
            by_id.pop(task_id) if task_id in by_id and (alone or not by_id[task_id].alone) else None
            for task_id, _, _, alone in claims
        ]

    async def _claim_limited(self, claims: list[Claim], by_id: dict[int, Task], now: datetime) -> None:
        """The claims the batch statement left alone because their tasks have
        limits: each on its own (``limits.py``), into ``by_id``."""
        missed = list(
            {task_id for task_id, _, _, _ in claims if task_id not in by_id and task_id <= MAX_TASK_ID}
        )
        found = await self._db.run(
            "limited_candidates", {"ids": missed, "now": now}, action="find limited tasks", rows=tuple_row
        )
        for (task_id,) in found:
            lease = max(lease for claimed_id, _, lease, _ in claims if claimed_id == task_id)
            alone = any(alone for claimed_id, _, _, alone in claims if claimed_id == task_id)
            task = await self._limited.claim(task_id, now, lease, alone)
            if task is not None:
                by_id[task_id] = task

    async def wake(self, task_type: str, key: str) -> list[Task]:
        return await self._limited.wake(task_type, key)

    async def save(self, task: Task) -> bool:
        return await self._saves.call(task)

    async def _save_one(self, task: Task) -> bool:
        try:
            return await self._db.run("save_task", _save_params(task), action=f"save task {task.id}") == 1
        except UniqueKeyTaken as exc:
            raise UniqueKeyTaken.reviving(task) from exc

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
            for index, result in zip(now, await self._save_distinct([tasks[i] for i in now]), strict=True):
                outcomes[index] = result
            remaining = later
        return outcomes

    async def _save_distinct(self, batch: list[Task]) -> list[bool | BaseException]:
        if len(batch) == 1:
            return [await self._save_one(batch[0])]
        params = {"rows": _save_rows(batch)}
        try:
            saved = await self._db.run(
                "save_tasks", params, action=f"save {len(batch)} tasks", rows=tuple_row
            )
        except ServiceUnavailable:
            raise
        except TaskcoreError:
            return list(
                await asyncio.gather(*(self._save_one(task) for task in batch), return_exceptions=True)
            )
        ids = {row[0] for row in saved}
        return [task.id in ids for task in batch]

    async def renew_lease(self, task_id: int, version: int, lease_until: datetime) -> bool:
        params = {"id": task_id, "version": version, "lease_until": lease_until}
        return await self._db.run("renew_lease", params, action=f"renew the lease of task {task_id}") == 1

    async def mark_dispatched(self, confirmed: Sequence[tuple[int, datetime]]) -> None:
        if confirmed:
            params = {"ids": [task_id for task_id, _ in confirmed], "ats": [at for _, at in confirmed]}
            await self._db.run("mark_dispatched", params, action="mark tasks dispatched")


async def _add_once_in(connection: Connection, new: NewTask, key: IdempotencyKey) -> AddedOnce:
    """Take the key and add the task (or take the one holding its unique key),
    or find what the key gave before: one transaction."""
    slot = {"owner": new.owner or "", "key": key.key}
    claimed = await connection.execute(
        queries["claim_idempotency_key"],
        {
            **slot,
            "request_hash": key.request_hash,
            "now": new.created_at,
            "expired_before": key.expired_before,
        },
    )
    if await claimed.fetchone() is None:
        used = await (await connection.execute(queries["get_idempotency_key"], slot)).fetchone()
        if used is None or used[1] is None:  # expired and purged meanwhile: rare, retryable
            raise RepositoryUnavailable("the idempotency key changed concurrently; try again")
        original = await one_task(connection, "get_task", {"id": used[1]})
        if original is None:
            raise RepositoryUnavailable("the idempotency key's task is gone; try again")
        return AddedOnce(original, replayed=True, request_hash=used[0], deduplicated=used[2])
    added = await add_in(connection, new)
    link = {**slot, "task_id": added.task.id, "deduplicated": not added.created}
    await connection.execute(queries["link_idempotency_key"], link)
    return AddedOnce(
        added.task, replayed=False, request_hash=key.request_hash, deduplicated=not added.created
    )
