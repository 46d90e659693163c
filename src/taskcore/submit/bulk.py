"""Cancelling or retrying every task that matches a filter, a batch at a time.

A bulk action is many single ones: each task goes through its rule on
``Task`` (``cancel``, ``retry``) and ``Transitions.record`` with its version
check, exactly as ``POST /tasks/{id}/cancel`` does. So a worker, the sweeper
or another bulk action racing it are met as they are for one task: a lost
race reads the task again and tries again while it still matches, and a
task that finished or moved out of the filter meanwhile is skipped, not an
error. Nothing is done by one set-based UPDATE, which would bypass the
rules, the cache, the change feed and the wake-ups a retry publishes.

The tasks are walked newest first by (created_at, id), ``BATCH`` at a time,
read on the primary (a lagging replica would offer stale versions, each a
lost race); a batch's transitions run concurrently, and the adapters
coalesce their writes. The walk only moves towards older tasks, so a task
submitted after the action began is never touched, no task is visited twice
in a call, and the call ends. A call visits at most ``limit`` tasks (an
HTTP request should not run for minutes, nor hold the API's event loop
busy that long) and says where to continue. A changed task leaves the
filter (a cancelled task is not PENDING), so repeating a call (after a
timeout, say) changes nothing it changed before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

import msgspec

from taskcore.errors import InvalidInput, InvalidTransition
from taskcore.model.query import TaskQuery
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.ports import TaskFinder, TaskReader
from taskcore.transitions.writer import Transitions

BATCH = 500
MAX_BULK = 10_000
"""The most tasks one call visits: 10,000 transitions take seconds, not minutes."""
CAS_ATTEMPTS = 5


class BulkOutcome(NamedTuple):
    matched: int  # tasks that matched the filter when read
    changed: int  # of those, the ones this call changed (the rest finished or changed meanwhile)
    # Where a next call goes on (as its query's ``before``) when this one stopped at its limit; None: done.
    resume_before: tuple[datetime, int] | None


class BulkChanges:
    def __init__(self, *, finder: TaskFinder, reader: TaskReader, transitions: Transitions) -> None:
        self._finder = finder
        self._reader = reader
        self._transitions = transitions

    async def apply(
        self,
        query: TaskQuery,
        action: str,
        applies_to: frozenset[TaskStatus],
        change: Callable[[Task], Task],
        *,
        limit: int = MAX_BULK,
    ) -> BulkOutcome:
        """``change`` every task matching ``query`` in the statuses it
        ``applies_to`` (``query.status``, if given, must be one of them),
        starting after ``query.before``; ``query.limit`` is not used, ``limit``
        bounds the call."""
        if type(limit) is not int or not 1 <= limit <= MAX_BULK:
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_BULK}, got {limit!r}", limit=limit)
        if query.status is not None and query.status not in applies_to:
            names = " and ".join(sorted(applies_to))
            raise InvalidInput(f"{action} applies to {names} tasks, not {query.status}", status=query.status)
        statuses = applies_to if query.status is None else frozenset({query.status})
        selected = msgspec.structs.replace(
            query,
            status=None,
            statuses=statuses & (statuses if query.statuses is None else query.statuses),
            before=None,
        )
        position, matched, changed = query.before, 0, 0
        while True:
            wanted = min(BATCH, limit - matched)
            # One more than wanted tells whether anything is left.
            found = await self._finder.find(
                msgspec.structs.replace(selected, limit=wanted + 1, before=position), fresh=True
            )
            batch = found[:wanted]
            changed += await self._change_all(batch, selected, change)
            matched += len(batch)
            if len(found) <= wanted:
                return BulkOutcome(matched, changed, None)
            position = (batch[-1].created_at, batch[-1].id)
            if matched >= limit:
                return BulkOutcome(matched, changed, position)

    async def _change_all(
        self, batch: list[Task], selected: TaskQuery, change: Callable[[Task], Task]
    ) -> int:
        """How many of ``batch`` this changed. All of them are tried before an
        error (the database or the broker gone) is raised: what landed stays,
        and a repeated call does the rest."""
        results = await asyncio.gather(
            *(self._change_one(task, selected, change) for task in batch), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(1 for result in results if result is True)

    async def _change_one(self, task: Task, selected: TaskQuery, change: Callable[[Task], Task]) -> bool:
        for _ in range(CAS_ATTEMPTS):
            try:
                if await self._transitions.record(change(task)):
                    return True
            except InvalidTransition:  # its status moved on, or a retry whose unique key another task holds
                return False
            fresh = await self._reader.get(task.id, fresh=True)
            if fresh is None or not selected.matches(fresh):
                return False
            task = fresh
        return False
