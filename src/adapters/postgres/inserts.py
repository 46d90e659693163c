"""New tasks into PostgreSQL: one INSERT for many submits, and unique keys kept.

Concurrent adds arrive here as one batch (``PostgresTasks``' coalescer). The
plain ones go in one INSERT (``add_tasks``). Those with a unique key go in
one of their own (``add_unique_tasks``, ``ON CONFLICT DO NOTHING`` on the
partial unique index), so a taken key leaves the rest of the batch stored,
and a plain submit pays nothing for the feature; a task whose key is taken
gets the holder, read by the next statement (it may have committed after the
INSERT's snapshot, so not in the same one). A holder that finished in
between freed its key, and that task is inserted again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from taskcore.adapters.postgres.database import Connection, PostgresDatabase
from taskcore.adapters.postgres.rows import optional_task_row, task_row
from taskcore.adapters.postgres.sql import queries
from taskcore.errors import (
    InvalidInput,
    RepositoryUnavailable,
    ServiceUnavailable,
    TaskcoreError,
    UnstorableValue,
)
from taskcore.model.task import NewTask, Task
from taskcore.model.uniqueness import Added, unique_slot

Slot = tuple[str, str, str]  # type, owner or "", unique key

UNIQUE_ATTEMPTS = 5
"""Rounds of "the key is taken" then "its holder has just finished" before a
submit gives up with a retryable error: each round needs the holder to
finish in the instant between two statements."""


def add_params(new: NewTask) -> dict[str, Any]:
    """``add_task``'s parameters: the row ``add_tasks`` takes, its values adapted one by one."""
    params = msgspec.structs.asdict(_new_row(new, position=1))
    params.update(
        input=Jsonb(new.input),
        metadata=Jsonb(new.metadata),
        after=list(new.after),
        tags_text=tags_text(new.tags),
    )
    return params


def tags_text(tags: Sequence[str]) -> str:
    """Tags as an array literal, each quoted: a tag named ``NULL`` stays a tag.
    Their charset (model/tags.py) has no quote or backslash to escape."""
    return "{" + ",".join(f'"{tag}"' for tag in tags) + "}"


def _slot(new: NewTask) -> Slot:
    return unique_slot(new.type, new.owner, new.unique_key or "")


def _slot_params(slots: Sequence[Slot]) -> dict[str, list[str]]:
    return {
        "types": [slot[0] for slot in slots],
        "owners": [slot[1] for slot in slots],
        "unique_keys": [slot[2] for slot in slots],
    }


class _NewRow(msgspec.Struct):
    """One row of ``add_tasks`` or ``add_unique_tasks``, as their JSON document
    carries it (``jsonb_to_recordset``): one encode for the whole batch, where
    an array parameter per column cost the driver a Python loop per element."""

    type: str
    input: Any
    max_attempts: int
    created_at: datetime
    run_at: datetime
    owner: str | None
    priority: int
    queue: str
    concurrency_key: str | None
    rate_key: str | None
    callback_url: str | None
    trace_context: str | None
    tags: tuple[str, ...]
    metadata: Any
    unique_key: str | None
    after: tuple[int, ...]
    run_anyway: bool
    workflow_id: int | None
    step: str | None
    position: int


def _new_row(new: NewTask, position: int) -> _NewRow:
    return _NewRow(
        type=new.type,
        input=new.input,
        max_attempts=new.max_attempts,
        created_at=new.created_at,
        run_at=new.run_at,
        owner=new.owner,
        priority=new.priority,
        queue=new.queue,
        concurrency_key=new.concurrency_key,
        rate_key=new.rate_key,
        callback_url=new.callback_url,
        trace_context=new.trace_context,
        tags=tuple(new.tags),
        metadata=new.metadata,
        unique_key=new.unique_key,
        after=tuple(new.after),
        run_anyway=new.run_anyway,
        workflow_id=new.workflow_id,
        step=new.step,
        position=position,
    )


def new_rows(news: Sequence[NewTask]) -> dict[str, str]:
    """The ``rows`` parameter of ``add_tasks`` and ``add_unique_tasks``: the
    tasks in order, each with its position."""
    rows = [_new_row(new, position) for position, new in enumerate(news, start=1)]
    return {"rows": _ENCODER.encode(rows).decode()}


_ENCODER = msgspec.json.Encoder()


class TaskInserts:
    """The statements that store new tasks, over the pools."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    async def add_batch(self, news: list[NewTask]) -> list[Added | BaseException]:
        """Concurrent adds: the plain ones as one INSERT, those with a unique
        key as another. Each statement's failure is its own tasks' only: the
        other's may be stored already, and their callers must hear so."""
        outcomes: dict[int, Added | BaseException] = {}
        plain = [index for index, new in enumerate(news) if new.unique_key is None]
        unique = [index for index, new in enumerate(news) if new.unique_key is not None]
        if plain:
            try:
                stored = await self._add_plain([news[index] for index in plain])
            except Exception as exc:
                stored = [exc] * len(plain)
            for index, task in zip(plain, stored, strict=True):
                outcomes[index] = task if isinstance(task, BaseException) else Added(task, created=True)
        if unique:
            try:
                added = await self._add_unique([news[index] for index in unique])
            except Exception as exc:
                added = [exc] * len(unique)
            for index, outcome in zip(unique, added, strict=True):
                outcomes[index] = outcome
        return [outcomes[index] for index in range(len(news))]

    async def _add_plain(self, news: list[NewTask]) -> list[Task | BaseException]:
        """As one INSERT. If the batch is refused for the data of one of its
        tasks (a value PostgreSQL cannot store), each task is added on its
        own, so only that one fails."""
        if len(news) == 1:
            return [await self._add_one(news[0])]
        params = new_rows(news)
        try:
            return list(
                await self._db.run("add_tasks", params, action=f"add {len(news)} tasks", rows=task_row)
            )
        except ServiceUnavailable:
            raise
        except TaskcoreError:
            return list(await asyncio.gather(*(self._add_one(new) for new in news), return_exceptions=True))

    async def _add_one(self, new: NewTask) -> Task:
        (task,) = await self._db.run("add_task", add_params(new), action="add a task", rows=task_row)
        return task

    async def _add_unique(self, news: list[NewTask]) -> list[Added | BaseException]:
        """Store what the index lets through, and give the others the task
        holding their key. A holder that finished between the two statements
        freed its key: those tasks are inserted again."""
        outcomes: dict[int, Added | BaseException] = {}
        pending = list(range(len(news)))
        for _ in range(UNIQUE_ATTEMPTS):
            stored = await self._insert_unique([news[index] for index in pending])
            taken = []
            for index, task in zip(pending, stored, strict=True):
                if task is None:
                    taken.append(index)
                else:
                    outcomes[index] = task if isinstance(task, BaseException) else Added(task, created=True)
            holders = await self._holders({_slot(news[index]) for index in taken})
            pending = []
            for index in taken:
                holder = holders.get(_slot(news[index]))
                if holder is None:
                    pending.append(index)
                else:
                    outcomes[index] = Added(holder, created=False)
            if not pending:
                break
        for index in pending:
            outcomes[index] = RepositoryUnavailable("a unique key's holder kept finishing; try again")
        return [outcomes[index] for index in range(len(news))]

    async def _insert_unique(self, news: list[NewTask]) -> list[Task | BaseException | None]:
        """``add_unique_tasks``: a stored task, or ``None`` where the key is
        taken; refused for one task's data, task by task."""
        try:
            stored: list[Task | BaseException | None] = [*await self._insert_unique_now(news)]
        except ServiceUnavailable:
            raise
        except TaskcoreError as exc:
            if len(news) == 1:
                return [exc]
            alone = await asyncio.gather(
                *(self._insert_unique_now([new]) for new in news), return_exceptions=True
            )
            return [outcome if isinstance(outcome, BaseException) else outcome[0] for outcome in alone]
        return stored

    async def _insert_unique_now(self, news: list[NewTask]) -> list[Task | None]:
        params = new_rows(news)
        return await self._db.run(
            "add_unique_tasks", params, action=f"add {len(news)} unique tasks", rows=optional_task_row
        )

    async def _holders(self, slots: set[Slot]) -> dict[Slot, Task]:
        if not slots:
            return {}
        holders = await self._db.run(
            "unique_key_holders",
            _slot_params(sorted(slots)),
            action="read unique keys' holders",
            rows=task_row,
        )
        return {unique_slot(task.type, task.owner, task.unique_key or ""): task for task in holders}


async def add_in(connection: Connection, new: NewTask) -> Added:
    """``add`` (or ``add_unique``) inside the caller's transaction. Each
    statement sees what committed before it, so a holder found taken by the
    INSERT is read by the next statement, or found finished and tried again.
    The tasks a new one runs after must exist, and are kept from being
    deleted until it is stored."""
    if new.after:
        # A cursor of its own rows: the caller's connection may have another row factory.
        async with connection.cursor(row_factory=tuple_row) as locked:
            await locked.execute(queries["lock_parents"], {"ids": list(new.after), "owner": new.owner})
            found = {task_id for (task_id,) in await locked.fetchall()}
        if missing := [task_id for task_id in new.after if task_id not in found]:
            raise InvalidInput(f"it runs after task {missing[0]}, which does not exist", after=missing[0])
    if new.unique_key is None:
        task = await one_task(connection, "add_task", add_params(new))
        assert task is not None
        return Added(task, created=True)
    unique = new_rows([new])
    for _ in range(UNIQUE_ATTEMPTS):
        async with connection.cursor(row_factory=optional_task_row) as cursor:
            await cursor.execute(queries["add_unique_tasks"], unique)
            stored = await cursor.fetchone()
        if stored is not None:
            return Added(stored, created=True)
        holder = await one_task(connection, "unique_key_holders", _slot_params([_slot(new)]))
        if holder is not None:
            return Added(holder, created=False)
    raise RepositoryUnavailable("a unique key's holder kept finishing; try again")


async def one_task(connection: Connection, name: str, params: dict[str, Any]) -> Task | None:
    async with connection.cursor(row_factory=task_row) as cursor:
        await cursor.execute(queries[name], params)
        return await cursor.fetchone()


async def add_all_in(connection: Connection, news: Sequence[NewTask]) -> list[Added]:
    """``TaskBatches.add_many`` inside the caller's transaction: the plain
    tasks in one INSERT, the unique ones in one (the holders of taken keys
    read by the next statement), those that run after others one by one.
    A value PostgreSQL cannot store fails the whole batch, naming its task."""
    outcomes: dict[int, Added] = {}
    plain = [i for i, new in enumerate(news) if new.unique_key is None and not new.after]
    unique = [i for i, new in enumerate(news) if new.unique_key is not None and not new.after]
    try:
        async with connection.transaction():  # a savepoint: a refusal is found task by task
            if plain:
                params = new_rows([news[i] for i in plain])
                async with connection.cursor(row_factory=task_row) as cursor:
                    await cursor.execute(queries["add_tasks"], params)
                    stored = await cursor.fetchall()
                outcomes |= {i: Added(task, created=True) for i, task in zip(plain, stored, strict=True)}
            if unique:
                params = new_rows([news[i] for i in unique])
                async with connection.cursor(row_factory=optional_task_row) as cursor:
                    await cursor.execute(queries["add_unique_tasks"], params)
                    inserted = await cursor.fetchall()
                outcomes |= {
                    i: Added(task, created=True) for i, task in zip(unique, inserted, strict=True) if task
                }
    except psycopg.DataError as exc:  # translated at the transaction's edge, once named here
        await _name_the_unstorable(connection, news)
        raise UnstorableValue(f"a task of the batch cannot be stored: {exc}") from exc
    for index, new in enumerate(news):
        if index not in outcomes:  # runs after others, or its unique key is taken (or just freed)
            outcomes[index] = await add_in(connection, new)
    return [outcomes[index] for index in range(len(news))]


async def _name_the_unstorable(connection: Connection, news: Sequence[NewTask]) -> None:
    """Which task of a refused batch PostgreSQL cannot store: halves of the
    batch tried in savepoints rolled back at once, so ten round trips find
    one of a thousand."""
    low, high = 0, len(news)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            async with connection.transaction():
                params = new_rows(news[low:middle])
                await connection.execute(queries["add_unique_tasks"], params)
                raise _RolledBack
        except _RolledBack:
            low = middle  # the first half stores: the culprit is in the second
        except psycopg.DataError:
            high = middle
    raise UnstorableValue(f"items[{low}]: a value PostgreSQL cannot store", index=low)


class _RolledBack(Exception):
    """Leaves a savepoint by rolling it back (psycopg rolls back on an exception)."""
