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

from taskcore.client.aio import AsyncClient, AsyncQueues, AsyncSchedules, AsyncWorkflows
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
    Batch,
    BulkResult,
    QueueState,
    Schedule,
    Step,
    Submitted,
    Task,
    TaskPage,
    TaskSpec,
    TaskStatus,
    Workflow,
)
from taskcore.client.retries import Retries
from taskcore.client.sync import Client, Queues, Schedules, Workflows

__all__ = [
    "AsyncClient",
    "AsyncQueues",
    "AsyncSchedules",
    "AsyncWorkflows",
    "BadRequest",
    "Batch",
    "BulkResult",
    "Client",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ProblemError",
    "QueueState",
    "Queues",
    "RateLimited",
    "Retries",
    "Schedule",
    "Schedules",
    "ServerError",
    "Step",
    "Submitted",
    "Task",
    "TaskPage",
    "TaskSpec",
    "TaskStatus",
    "TaskcoreClientError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "Unprocessable",
    "Workflow",
    "Workflows",
]
