"""``taskcore.client``: the taskcore HTTP API from Python, synchronously or with asyncio.

    from taskcore.client import Client

    with Client("http://127.0.0.1:8005", token=token) as client:
        task = client.submit("reverse", "hello")
        done = client.wait(task.id, timeout=30)

``AsyncClient`` has the same methods, to ``await``. Requests that fail on
the way are sent again when that cannot act twice (``retries.py`` says which),
and a refused request raises a ``ProblemError`` carrying the API's RFC 9457
problem details. It speaks HTTP only: it needs neither the server nor its
services, only httpx, httpx-sse and msgspec.
"""

from taskcore.client.aio import AsyncClient, AsyncQueues, AsyncSchedules, AsyncWebhooks, AsyncWorkflows
from taskcore.client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    RateLimited,
    ServerError,
    TaskcoreClientError,
    TransportError,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    Unprocessable,
)
from taskcore.client.models import (
    Attempt,
    Batch,
    BulkResult,
    DeliveryPage,
    QueueState,
    RegisteredWebhook,
    Schedule,
    Step,
    Submitted,
    Task,
    TaskDetail,
    TaskPage,
    TaskSpec,
    TaskStatus,
    WebhookDelivery,
    WebhookEndpoint,
    Workflow,
)
from taskcore.client.retries import Retries
from taskcore.client.sync import Client, Queues, Schedules, Webhooks, Workflows

__all__ = [
    "AsyncClient",
    "AsyncQueues",
    "AsyncSchedules",
    "AsyncWebhooks",
    "AsyncWorkflows",
    "Attempt",
    "BadRequest",
    "Batch",
    "BulkResult",
    "Client",
    "Conflict",
    "DeliveryPage",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ProblemError",
    "QueueState",
    "Queues",
    "RateLimited",
    "RegisteredWebhook",
    "Retries",
    "Schedule",
    "Schedules",
    "ServerError",
    "Step",
    "Submitted",
    "Task",
    "TaskDetail",
    "TaskPage",
    "TaskSpec",
    "TaskStatus",
    "TaskcoreClientError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "Unprocessable",
    "WebhookDelivery",
    "WebhookEndpoint",
    "Webhooks",
    "Workflow",
    "Workflows",
]
