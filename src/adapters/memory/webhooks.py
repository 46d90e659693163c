"""Webhook endpoints and deliveries in memory: what PostgreSQL's trigger and
tables do, for dev mode and the unit tests (``webhook_events`` is the
trigger, called by ``MemoryTasks.save``)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.model.task import Task
from taskcore.model.webhooks import (
    DeliveryQuery,
    DeliveryStatus,
    DueDelivery,
    NewEndpoint,
    WebhookDelivery,
    WebhookEndpoint,
    event_of,
)


def _utc(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def webhook_events(database: MemoryDatabase, ended: Task) -> None:
    """The deliveries of a task that has just ended: its callback_url's, and
    each matching endpoint's (the trigger of migration 0019)."""
    event = event_of(ended.status)
    receivers: list[tuple[str, int | None, str | None]] = []
    if ended.callback_url is not None:
        receivers.append((ended.callback_url, None, ended.owner))
    for endpoint in database.webhook_endpoints.values():
        if (endpoint.owner is None or endpoint.owner == ended.owner) and event in endpoint.events:
            receivers.append((endpoint.url, endpoint.id, endpoint.owner))
    if not receivers:
        return
    payload = {
        "type": event,
        "timestamp": _utc(ended.finished_at or ended.updated_at),
        "data": {
            "id": ended.id,
            "type": ended.type,
            "status": ended.status.value,
            "queue": ended.queue,
            "result": ended.result,
            "error": ended.error,
            "attempts": ended.attempts,
            "max_attempts": ended.max_attempts,
            "owner": ended.owner,
            "created_at": _utc(ended.created_at),
            "finished_at": _utc(ended.finished_at),
            "workflow_id": ended.workflow_id,
            "step": ended.step,
        },
    }
    for url, endpoint_id, owner in receivers:
        delivery_id = len(database.webhook_deliveries) + 1
        database.webhook_deliveries[delivery_id] = WebhookDelivery(
            id=delivery_id,
            task_id=ended.id,
            event=event,
            url=url,
            endpoint_id=endpoint_id,
            owner=owner,
            payload=payload,
            status=DeliveryStatus.PENDING,
            attempts=0,
            created_at=ended.updated_at,
            retry_from=ended.updated_at,
            next_attempt_at=ended.updated_at,
        )


class MemoryWebhooks:
    """``WebhookEndpoints``, ``WebhookOutbox`` and ``DeliveryReads`` of the memory tables."""

    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    async def add_endpoint(self, new: NewEndpoint) -> WebhookEndpoint:
        self.db.check()
        endpoint = WebhookEndpoint(id=self.db.next_endpoint_id(), **msgspec.structs.asdict(new))
        self.db.webhook_endpoints[endpoint.id] = endpoint
        return endpoint

    async def endpoints(self, owner: str | None) -> list[WebhookEndpoint]:
        self.db.check()
        return [e for e in self.db.webhook_endpoints.values() if owner is None or e.owner == owner]

    async def remove_endpoint(self, endpoint_id: int, owner: str | None) -> bool:
        self.db.check()
        endpoint = self.db.webhook_endpoints.get(endpoint_id)
        if endpoint is None or (owner is not None and endpoint.owner != owner):
            return False
        del self.db.webhook_endpoints[endpoint_id]
        for delivery in list(self.db.webhook_deliveries.values()):
            if delivery.endpoint_id == endpoint_id and delivery.status is DeliveryStatus.PENDING:
                self._put(
                    delivery,
                    status=DeliveryStatus.FAILED,
                    next_attempt_at=None,
                    last_error="its endpoint was removed",
                )
        return True

    async def claim_deliveries(self, now: datetime, lease_until: datetime, limit: int) -> list[DueDelivery]:
        self.db.check()
        due = sorted(
            (
                d
                for d in self.db.webhook_deliveries.values()
                if d.status is DeliveryStatus.PENDING
                and d.next_attempt_at is not None
                and d.next_attempt_at <= now
            ),
            key=lambda d: (d.next_attempt_at, d.id),
        )[:limit]
        claimed = []
        for delivery in due:
            held = self._put(delivery, attempts=delivery.attempts + 1, next_attempt_at=lease_until)
            endpoint = self.db.webhook_endpoints.get(delivery.endpoint_id or 0)
            claimed.append(DueDelivery(delivery=held, secret=endpoint.secret if endpoint else None))
        return claimed

    async def delivered(self, delivery_id: int, at: datetime, status_code: int) -> None:
        self.db.check()
        delivery = self.db.webhook_deliveries[delivery_id]
        if delivery.status is DeliveryStatus.PENDING:
            self._put(
                delivery,
                status=DeliveryStatus.DELIVERED,
                delivered_at=at,
                next_attempt_at=None,
                last_status=status_code,
                last_error=None,
            )

    async def attempt_failed(
        self,
        delivery_id: int,
        *,
        error: str,
        status_code: int | None,
        retry_at: datetime | None,
    ) -> None:
        self.db.check()
        delivery = self.db.webhook_deliveries[delivery_id]
        if delivery.status is DeliveryStatus.PENDING:
            self._put(
                delivery,
                status=DeliveryStatus.PENDING if retry_at else DeliveryStatus.FAILED,
                next_attempt_at=retry_at,
                last_status=status_code,
                last_error=error[:1000],
            )

    async def deliveries(self, query: DeliveryQuery) -> list[WebhookDelivery]:
        self.db.check()
        found = [
            d
            for d in self.db.webhook_deliveries.values()
            if (query.owner is None or d.owner == query.owner)
            and (query.status is None or d.status is query.status)
            and (query.task_id is None or d.task_id == query.task_id)
            and (query.endpoint_id is None or d.endpoint_id == query.endpoint_id)
            and (query.before is None or d.id < query.before)
        ]
        return sorted(found, key=lambda d: d.id, reverse=True)[: query.limit]

    async def redeliver(self, delivery_id: int, owner: str | None, now: datetime) -> WebhookDelivery | None:
        self.db.check()
        delivery = self.db.webhook_deliveries.get(delivery_id)
        if delivery is None or delivery.status is not DeliveryStatus.FAILED:
            return None
        if owner is not None and delivery.owner != owner:
            return None
        return self._put(
            delivery,
            status=DeliveryStatus.PENDING,
            attempts=0,
            retry_from=now,
            next_attempt_at=now,
            last_status=None,
            last_error=None,
        )

    def _put(self, delivery: WebhookDelivery, **changes: object) -> WebhookDelivery:
        changed = msgspec.structs.replace(delivery, **changes)
        self.db.webhook_deliveries[delivery.id] = changed
        return changed
