"""Webhook endpoints and deliveries on PostgreSQL.

The deliveries are made by a trigger on the task's change into a final
status (migration 0019), in that transaction: this adapter only registers
endpoints, claims and records deliveries, and lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import RowMaker, dict_row, tuple_row

from taskcore.adapters.postgres.database import PostgresDatabase
from taskcore.model.webhooks import (
    DeliveryQuery,
    DeliveryStatus,
    DueDelivery,
    NewEndpoint,
    WebhookDelivery,
    WebhookEndpoint,
)

_DELIVERY_FIELDS = frozenset(WebhookDelivery.__struct_fields__)
_DELIVERY_TIMES = ("created_at", "retry_from", "next_attempt_at", "delivered_at")


def _delivery(row: dict[str, Any]) -> WebhookDelivery:
    values = {name: value for name, value in row.items() if name in _DELIVERY_FIELDS}
    values["status"] = DeliveryStatus(values["status"])
    for name in _DELIVERY_TIMES:
        if values[name] is not None:
            values[name] = values[name].astimezone(UTC)
    return WebhookDelivery(**values)


def delivery_row(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[WebhookDelivery]:
    as_dict = dict_row(cursor)

    def make(values: Sequence[Any]) -> WebhookDelivery:
        return _delivery(as_dict(values))

    return make


def due_delivery_row(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[DueDelivery]:
    as_dict = dict_row(cursor)

    def make(values: Sequence[Any]) -> DueDelivery:
        row = as_dict(values)
        return DueDelivery(delivery=_delivery(row), secret=row["secret"])

    return make


def endpoint_row(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[WebhookEndpoint]:
    as_dict = dict_row(cursor)

    def make(values: Sequence[Any]) -> WebhookEndpoint:
        row = as_dict(values)
        row["events"] = tuple(row["events"])
        row["created_at"] = row["created_at"].astimezone(UTC)
        return WebhookEndpoint(**row)

    return make


class PostgresWebhooks:
    """``WebhookEndpoints``, ``WebhookOutbox`` and ``DeliveryReads``. The
    listings answer people and may read the replica; the claims decide, on
    the primary."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    async def add_endpoint(self, new: NewEndpoint) -> WebhookEndpoint:
        params = {
            "owner": new.owner,
            "url": new.url,
            "events": list(new.events),
            "secret": new.secret,
            "description": new.description,
            "created_at": new.created_at,
        }
        (endpoint,) = await self._db.run(
            "add_webhook_endpoint", params, action="register a webhook endpoint", rows=endpoint_row
        )
        return endpoint

    async def endpoints(self, owner: str | None) -> list[WebhookEndpoint]:
        return await self._db.run(
            "webhook_endpoints", {"owner": owner}, action="list webhook endpoints", rows=endpoint_row
        )

    async def remove_endpoint(self, endpoint_id: int, owner: str | None) -> bool:
        ((removed,),) = await self._db.run(
            "remove_webhook_endpoint",
            {"id": endpoint_id, "owner": owner},
            action="remove a webhook endpoint",
            rows=tuple_row,
        )
        return bool(removed)

    async def claim_deliveries(self, now: datetime, lease_until: datetime, limit: int) -> list[DueDelivery]:
        return await self._db.run(
            "claim_webhook_deliveries",
            {"now": now, "lease_until": lease_until, "limit": limit},
            action="claim webhook deliveries",
            rows=due_delivery_row,
        )

    async def delivered(self, delivery_id: int, at: datetime, status_code: int) -> None:
        await self._db.run(
            "webhook_delivered",
            {"id": delivery_id, "at": at, "status_code": status_code},
            action="record a webhook delivery",
        )

    async def attempt_failed(
        self,
        delivery_id: int,
        *,
        error: str,
        status_code: int | None,
        retry_at: datetime | None,
    ) -> None:
        await self._db.run(
            "webhook_attempt_failed",
            {"id": delivery_id, "error": error[:1000], "status_code": status_code, "retry_at": retry_at},
            action="record a failed webhook attempt",
        )

    async def deliveries(self, query: DeliveryQuery) -> list[WebhookDelivery]:
        params = {
            "owner": query.owner,
            "status": query.status.value if query.status else None,
            "task_id": query.task_id,
            "endpoint_id": query.endpoint_id,
            "before": query.before,
            "limit": query.limit,
        }
        return await self._db.run(
            "webhook_deliveries", params, action="list webhook deliveries", rows=delivery_row, replica=True
        )

    async def redeliver(self, delivery_id: int, owner: str | None, now: datetime) -> WebhookDelivery | None:
        rows = await self._db.run(
            "redeliver_webhook",
            {"id": delivery_id, "owner": owner, "now": now},
            action="redeliver a webhook",
            rows=delivery_row,
        )
        return rows[0] if rows else None
