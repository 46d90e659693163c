"""``/webhooks``: the endpoints an owner registers for its tasks' ends, and
the deliveries made to them (and to tasks' own ``callback_url``).

An owner sees and removes only its own endpoints and deliveries; an admin
(and every caller with auth off) registers endpoints that hear every task.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, HttpMethod, Request, Response, delete, get, post, route
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from taskcore.entrypoints.http.auth import READ, WRITE, authorized
from taskcore.entrypoints.http.tasks_controller import AUTH, problems
from taskcore.model.task import MAX_TASK_ID
from taskcore.model.webhooks import (
    EVENTS,
    MAX_URL_LENGTH,
    DeliveryQuery,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from taskcore.webhooks.admin import MAX_DESCRIPTION, WebhookAdmin

Webhooks = NamedDependency[WebhookAdmin]
Event = Literal["task.completed", "task.failed", "task.cancelled"]
assert set(Event.__args__) == set(EVENTS)  # type: ignore[attr-defined]
Id = Annotated[
    int,
    Parameter(
        ge=1, le=MAX_TASK_ID, description="Its id.", schema_extra={"minimum": 1, "maximum": MAX_TASK_ID}
    ),
]
MAX_PAGE = 200


class RegisterEndpoint(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_URL_LENGTH,
            description=(
                "An http(s) URL; loopback, private and link-local addresses are refused unless"
                " TASKCORE_WEBHOOK_ALLOW_PRIVATE."
            ),
        ),
    ]
    events: Annotated[
        list[Event], msgspec.Meta(max_length=len(EVENTS), description="The events it hears; empty: all.")
    ] = msgspec.field(default_factory=list)
    description: Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION)] | None = None
    secret: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=200,
                description="A whsec_ key of your own; one is made when absent. Shown only in this answer.",
            ),
        ]
        | None
    ) = None


class EndpointView(msgspec.Struct, kw_only=True):
    id: int
    url: str
    events: list[str]
    description: str | None
    created_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> EndpointView:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            events=list(endpoint.events),
            description=endpoint.description,
            created_at=endpoint.created_at,
        )


class RegisteredEndpoint(EndpointView, kw_only=True):
    secret: str  # the signing key, to verify deliveries with; not shown again


class EndpointList(msgspec.Struct, kw_only=True):
    items: list[EndpointView]


class DeliveryView(msgspec.Struct, kw_only=True):
    id: int
    message_id: str  # the webhook-id header: the same on every attempt
    task_id: int
    event: str
    url: str
    endpoint_id: int | None  # null: the task's own callback_url
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryView:
        return cls(
            id=delivery.id,
            message_id=delivery.message_id,
            task_id=delivery.task_id,
            event=delivery.event,
            url=delivery.url,
            endpoint_id=delivery.endpoint_id,
            status=delivery.status,
            attempts=delivery.attempts,
            created_at=delivery.created_at,
            next_attempt_at=delivery.next_attempt_at,
            delivered_at=delivery.delivered_at,
            last_status=delivery.last_status,
            last_error=delivery.last_error,
        )


class DeliveryPage(msgspec.Struct, kw_only=True):
    items: list[DeliveryView]  # newest first
    next_before: int | None  # pass as ?before= for the next page; null: this was the last


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]

    @route("/", http_method=HttpMethod.OPTIONS, include_in_schema=False, status_code=204)
    async def allow(self) -> Response[None]:
        """Litestar 2's automatic OPTIONS answer lists only the first method of a
        path (litestar#4169); this one lists them all. Its name sorts first so it
        is registered before the automatic one."""
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @post(
        "/",
        status_code=201,
        operation_id="registerWebhook",
        summary="Register a webhook endpoint",
        responses=problems(400, *AUTH, 413, 422, 503),
    )
    async def register(
        self, data: JSONBody[RegisterEndpoint], request: Request[Any, Any, Any], webhooks: Webhooks
    ) -> Response[RegisteredEndpoint]:
        """From now on each of the caller's tasks that ends with one of
        ``events`` is POSTed to ``url``, signed with the answer's ``secret``
        (Standard Webhooks), retried for up to a day."""
        caller = authorized(request, WRITE)
        endpoint = await webhooks.register(
            data.url,
            data.events,
            owner=caller.owner_filter,
            description=data.description,
            secret=data.secret,
        )
        view = RegisteredEndpoint(**msgspec.structs.asdict(EndpointView.of(endpoint)), secret=endpoint.secret)
        return Response(view, status_code=201, headers={"Location": f"/webhooks/{endpoint.id}"})

    @get(
        "/",
        operation_id="listWebhooks",
        summary="List webhook endpoints",
        responses=problems(400, *AUTH, 503),
    )
    async def list_endpoints(self, request: Request[Any, Any, Any], webhooks: Webhooks) -> EndpointList:
        caller = authorized(request, READ)
        return EndpointList(items=[EndpointView.of(e) for e in await webhooks.endpoints(caller.owner_filter)])

    @delete(
        "/{endpoint_id:int}",
        status_code=204,
        operation_id="removeWebhook",
        summary="Remove a webhook endpoint",
        responses=problems(400, *AUTH, 404, 422, 503),
    )
    async def remove(self, endpoint_id: Id, request: Request[Any, Any, Any], webhooks: Webhooks) -> None:
        """Its deliveries still to send are not sent (they end FAILED)."""
        caller = authorized(request, WRITE)
        await webhooks.remove(endpoint_id, caller.owner_filter)

    @get(
        "/deliveries",
        operation_id="listWebhookDeliveries",
        summary="List webhook deliveries",
        responses=problems(400, *AUTH, 422, 503),
    )
    async def deliveries(
        self,
        request: Request[Any, Any, Any],
        webhooks: Webhooks,
        status: Annotated[DeliveryStatus | None, Parameter(description="Only these.")] = None,
        task_id: Annotated[int | None, Parameter(ge=1, le=MAX_TASK_ID)] = None,
        endpoint_id: Annotated[int | None, Parameter(ge=1, le=MAX_TASK_ID)] = None,
        before: Annotated[
            int | None, Parameter(ge=1, le=MAX_TASK_ID, description="The previous page's next_before.")
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 50,
    ) -> DeliveryPage:
        """Newest first; ``status=FAILED`` lists what was given up on (its
        ``last_error`` says why)."""
        caller = authorized(request, READ)
        query = DeliveryQuery(
            owner=caller.owner_filter,
            status=status,
            task_id=task_id,
            endpoint_id=endpoint_id,
            before=before,
            limit=limit + 1,
        )
        found = await webhooks.deliveries(query)
        page = found[:limit]
        more = len(found) > limit
        return DeliveryPage(
            items=[DeliveryView.of(d) for d in page], next_before=page[-1].id if more else None
        )

    @post(
        "/deliveries/{delivery_id:int}/retry",
        status_code=200,
        operation_id="redeliverWebhook",
        summary="Send a FAILED delivery again",
        responses=problems(400, *AUTH, 404, 422, 503),
    )
    async def redeliver(
        self, delivery_id: Id, request: Request[Any, Any, Any], webhooks: Webhooks
    ) -> DeliveryView:
        """Due at once, with a new day of retries; the same ``webhook-id``."""
        caller = authorized(request, WRITE)
        return DeliveryView.of(await webhooks.redeliver(delivery_id, caller.owner_filter))
