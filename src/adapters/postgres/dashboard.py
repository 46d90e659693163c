"""The dashboard's reads and the workers' reports on PostgreSQL.

Reads that answer people go to the read replica when there is one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from psycopg.rows import dict_row

from taskcore.adapters.postgres.database import PostgresDatabase
from taskcore.model.stats import MinuteStats
from taskcore.model.status import TaskStatus
from taskcore.model.workers import WorkerReport


class PostgresDashboard:
    """``DashboardReads`` on PostgreSQL."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    async def status_counts(self, owner: str | None) -> dict[TaskStatus, int]:
        action = "count tasks by status"
        if owner is None:
            rows = await self._db.run("status_counts", {}, action=action, rows=dict_row, replica=True)
        else:
            params = {"owner": owner}
            rows = await self._db.run(
                "status_counts_of_owner", params, action=action, rows=dict_row, replica=True
            )
        return {TaskStatus(row["status"]): row["tasks"] for row in rows}

    async def minute_stats(self, since: datetime, owner: str | None) -> list[MinuteStats]:
        params = {"since": since, "owner": owner}
        rows = await self._db.run(
            "minute_stats", params, action="read the minute stats", rows=dict_row, replica=True
        )
        return [MinuteStats(**{**row, "minute": row["minute"].astimezone(UTC)}) for row in rows]


class PostgresWorkers:
    """``WorkerRoster`` on PostgreSQL."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    async def report_worker(self, report: WorkerReport) -> None:
        await self._db.run(
            "report_worker", msgspec.structs.asdict(report), action=f"report worker {report.id}"
        )

    async def workers_seen(self, since: datetime) -> list[WorkerReport]:
        params = {"since": since}
        rows = await self._db.run(
            "workers_seen", params, action="list the workers seen", rows=dict_row, replica=True
        )
        utc = ("started_at", "seen_at")
        return [WorkerReport(**{**row, **{name: row[name].astimezone(UTC) for name in utc}}) for row in rows]
