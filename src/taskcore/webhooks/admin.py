"""Registering webhook endpoints and reading what was delivered.

An endpoint belongs to the caller (its owner) and hears the events it chose
of the caller's tasks; one registered with auth off (no owner) hears
everyone's. Its signing secret is made here, or given, and shown once.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskcore.errors import InvalidInput
from taskcore.model.webhooks import (
    MAX_ENDPOINTS,
    DeliveryQuery,
    NewEndpoint,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookNotFound,
    check_events,
    check_secret,
    check_url,
    new_secret,
)
from taskcore.ports import Clock
from taskcore.ports.webhooks import DeliveryReads, WebhookEndpoints

MAX_DESCRIPTION = 500


class WebhookAdmin:
    def __init__(
        self,
        *,
        endpoints: WebhookEndpoints,
        reads: DeliveryReads,
        clock: Clock,
        allow_private: bool = False,
    ) -> None:
        self._endpoints = endpoints
        self._reads = reads
        self._clock = clock
        self._allow_private = allow_private

    async def register(
        self,
        url: str,
        events: Sequence[str] = (),
        *,
        owner: str | None = None,
        description: str | None = None,
        secret: str | None = None,
    ) -> WebhookEndpoint:
        """A new endpoint of ``owner`` for ``events`` (every event when none is
        named); ``InvalidInput`` for a URL the workers may not call."""
        check_url(url, allow_private=self._allow_private)
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise InvalidInput(f"a description is at most {MAX_DESCRIPTION} characters")
        new = NewEndpoint(
            url=url,
            events=check_events(list(events)),
            secret=check_secret(secret) if secret is not None else new_secret(),
            owner=owner,
            description=description,
            created_at=self._clock.now(),
        )
        if len(await self._endpoints.endpoints(owner)) >= MAX_ENDPOINTS:
            raise InvalidInput(f"an owner has at most {MAX_ENDPOINTS} webhook endpoints")
        return await self._endpoints.add_endpoint(new)

    async def endpoints(self, owner: str | None) -> list[WebhookEndpoint]:
        return await self._endpoints.endpoints(owner)

    async def remove(self, endpoint_id: int, owner: str | None) -> None:
        if not await self._endpoints.remove_endpoint(endpoint_id, owner):
            raise WebhookNotFound(f"no webhook endpoint {endpoint_id}", endpoint_id=endpoint_id)

    async def deliveries(self, query: DeliveryQuery) -> list[WebhookDelivery]:
        return await self._reads.deliveries(query)

    async def redeliver(self, delivery_id: int, owner: str | None) -> WebhookDelivery:
        """A FAILED delivery sent again, its retries starting over."""
        delivery = await self._reads.redeliver(delivery_id, owner, self._clock.now())
        if delivery is None:
            raise WebhookNotFound(f"no FAILED webhook delivery {delivery_id}", delivery_id=delivery_id)
        return delivery
