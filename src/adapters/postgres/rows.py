"""Rows into the core's records, inside the cursor, so no raw row leaves the adapter."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import psycopg
from psycopg.rows import RowMaker

from taskcore.model.status import TaskStatus
from taskcore.model.task import Task

_TIMESTAMPS = ("created_at", "updated_at", "run_at", "lease_until", "started_at", "finished_at")


def task_row(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[Task]:
    """Rows become ``Task``s.

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
