"""Rows into the core's records, inside the cursor, so no raw row leaves the adapter."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import msgspec
import psycopg
from psycopg.rows import RowMaker

from taskcore.model.attempts import Attempt
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task

_TIMESTAMPS = (
    "created_at",
    "updated_at",
    "run_at",
    "lease_until",
    "started_at",
    "finished_at",
    "progress_at",
)
_ARRAYS = ("after", "tags")  # lists from the driver, tuples in Task
_FIELDS = frozenset(Task.__struct_fields__)


def task_row(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[Task]:
    """Rows become ``Task``s.

    Statements return whole rows; the columns ``Task`` has no field for (the
    outbox's ``dispatched_at``) are left out here. Timestamps arrive in the
    session's time zone, which is whatever the server or database is set to;
    they are normalised to UTC so callers get the same kind of value the
    system clock gives, whatever the server's setting.
    """
    names = [column.name for column in cursor.description or ()]
    kept = [(index, name) for index, name in enumerate(names) if name in _FIELDS]

    def make(values: Sequence[Any]) -> Task:
        row = {name: values[index] for index, name in kept}
        row["status"] = TaskStatus(row["status"])
        for name in _ARRAYS:
            if name in row:
                row[name] = tuple(row[name])
        for name in _TIMESTAMPS:
            if row[name] is not None:
                row[name] = row[name].astimezone(UTC)
        if "attempt_log" in row:
            row["attempt_log"] = _attempts(row["attempt_log"])
        return Task(**row)

    return make


def _attempts(log: list[dict[str, Any]]) -> tuple[Attempt, ...]:
    """The jsonb log as ``Attempt``s, in UTC (a claim's SQL writes its time
    in the session's time zone)."""
    return tuple(
        msgspec.structs.replace(
            attempt,
            claimed_at=attempt.claimed_at.astimezone(UTC),
            ended_at=None if attempt.ended_at is None else attempt.ended_at.astimezone(UTC),
        )
        for attempt in msgspec.convert(log, tuple[Attempt, ...])
    )


def task_with_extras_row(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[tuple[Task, dict[str, Any]]]:
    """Rows become a ``Task`` and the row's other columns by name (a
    statement's bookkeeping the core never sees, such as ``rate_slot``)."""
    make_task = task_row(cursor)
    names = [column.name for column in cursor.description or ()]
    extras = [(index, name) for index, name in enumerate(names) if name not in _FIELDS]

    def make(values: Sequence[Any]) -> tuple[Task, dict[str, Any]]:
        return make_task(values), {name: values[index] for index, name in extras}

    return make


def optional_task_row(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[Task | None]:
    """As ``task_row``, and ``None`` for a row of NULLs (an outer join's
    missing side: a task a statement did not store)."""
    make_task = task_row(cursor)
    names = [column.name for column in cursor.description or ()]
    id_index = names.index("id")

    def make(values: Sequence[Any]) -> Task | None:
        return None if values[id_index] is None else make_task(values)

    return make
