"""Ports of completion webhooks: the endpoints owners register, the deliveries
the store makes when tasks end, and the one call that sends a delivery.

The store writes a task's deliveries in the transaction that writes its
final state (PostgreSQL: a trigger on that change), so the core never
enqueues them itself: what it does is claim the due ones, send them, and
record how each attempt went.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from taskcore.model.webhooks import DeliveryQuery, DueDelivery, NewEndpoint, WebhookDelivery, WebhookEndpoint


class WebhookEndpoints(Protocol):
    async def add_endpoint(self, new: NewEndpoint) -> WebhookEndpoint: ...

    async def endpoints(self, owner: str | None) -> list[WebhookEndpoint]:
        """``owner``'s endpoints, oldest first; every one for ``None``."""
        ...

    async def remove_endpoint(self, endpoint_id: int, owner: str | None) -> bool:
        """``False`` if there is no such endpoint of ``owner`` (any, for ``None``).
        Its deliveries still to send are not sent."""
        ...


class WebhookOutbox(Protocol):
    async def claim_deliveries(self, now: datetime, lease_until: datetime, limit: int) -> list[DueDelivery]:
        """Up to ``limit`` PENDING deliveries due at ``now``, oldest due first,
        each with its attempt counted and held until ``lease_until``: a sender
        that dies leaves them due again then (so a delivery is sent at least
        once, maybe more). Concurrent claimers get different deliveries. Each
        comes with its endpoint's current secret (``None`` for a callback_url)."""
        ...

    async def delivered(self, delivery_id: int, at: datetime, status_code: int) -> None: ...

    async def attempt_failed(
        self,
        delivery_id: int,
        *,
        error: str,
        status_code: int | None,
        retry_at: datetime | None,
    ) -> None:
        """Record a failed attempt: PENDING again at ``retry_at``, or FAILED for
        good when it is ``None``."""
        ...


class DeliveryReads(Protocol):
    async def deliveries(self, query: DeliveryQuery) -> list[WebhookDelivery]: ...

    async def redeliver(self, delivery_id: int, owner: str | None, now: datetime) -> WebhookDelivery | None:
        """A FAILED delivery of ``owner``'s (any, for ``None``) PENDING again,
        due ``now``, its attempts and retry window starting over; ``None`` if
        there is no such delivery or it is not FAILED."""
        ...


class WebhookPoster(Protocol):
    async def post(self, delivery: WebhookDelivery, secret: str, at: datetime) -> int:
        """Send ``delivery`` signed with ``secret`` as of ``at`` and return the
        receiver's HTTP status. ``WebhookRefused`` for a receiver that must not
        be called; ``ServiceUnavailable`` when it could not be reached in time."""
        ...
