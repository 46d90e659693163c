"""Each API operation as data: what to send, how to read the answer, and whether it may be resent.

Neither sync nor async: ``Client`` and ``AsyncClient`` send the same ``Call``
objects, each with its own I/O, so the two agree on every path, body and
retry rule by construction (the "sans-I/O" way of httpx's own core).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from taskcore.client.errors import ProblemError, UnexpectedResponse, problem_class
from taskcore.client.models import (
    Batch,
    BatchBody,
    BulkResult,
    CatchUp,
    DeliveryPage,
    FilterBody,
    Problem,
    Progress,
    QueueList,
    QueueState,
    RegisteredWebhook,
    Schedule,
    ScheduleBody,
    ScheduleList,
    Step,
    StepBody,
    Submitted,
    Task,
    TaskDetail,
    TaskPage,
    TaskSpec,
    WebhookBody,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookList,
    Workflow,
    WorkflowBody,
)
from taskcore.client.retries import Attempts, Resend, retry_after

T = TypeVar("T")
U = TypeVar("U")

MAX_WAIT_S = 60.0  # the API holds a long poll at most this long
MAX_BULK = 10_000  # tasks one bulk call looks at, at most

Params = Mapping[str, str | int | float | Sequence[str]]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and how to read its answer."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    resend: Resend
    params: Params = field(default_factory=dict)
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    holds_s: float = 0.0  # how long the API may hold the answer on purpose (a long poll)


_ENCODER = msgspec.json.Encoder()
_JSON = {"Content-Type": "application/json"}
_PROBLEM = msgspec.json.Decoder(Problem)


def _json(kind: type[T]) -> Callable[[httpx.Response], T]:
    decoder = msgspec.json.Decoder(kind)

    def read(response: httpx.Response) -> T:
        return decoder.decode(response.content)

    return read


def _then(read: Callable[[httpx.Response], T], pick: Callable[[T], U]) -> Callable[[httpx.Response], U]:
    return lambda response: pick(read(response))


def _nothing(response: httpx.Response) -> None:
    return None


_TASK = _json(Task)
_WORKFLOW = _json(Workflow)
_QUEUE = _json(QueueState)
_SCHEDULE = _json(Schedule)
_BULK = _json(BulkResult)


def _submitted(response: httpx.Response) -> Submitted:
    return Submitted(
        task=_TASK(response),
        deduplicated=response.headers.get("deduplicated") == "true",
        replayed=response.headers.get("idempotent-replayed") == "true",
    )


def _posting(
    path: str, read: Callable[[httpx.Response], T], resend: Resend, body: Any, **headers: str
) -> Call[T]:
    """A POST of ``body`` as JSON."""
    return Call("POST", path, read, resend, body=_ENCODER.encode(body), headers={**_JSON, **headers})


def _segment(name: str) -> str:
    return quote(name, safe="")


def result(call: Call[T], response: httpx.Response, tries: Attempts) -> T:
    """The answer read as the call says; the error it stands for if it is not a 2xx."""
    if not response.is_success:
        error = problem(response, attempts=tries.count)
        error.resent_after_lost_answer = tries.maybe_acted_on
        raise error
    try:
        return call.read(response)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UnexpectedResponse(
            f"{call.method} {call.path} answered {response.status_code} with a body this client cannot "
            f"read: {exc}",
            status=response.status_code,
            body=response.content,
        ) from exc


def problem(response: httpx.Response, *, attempts: int = 1) -> ProblemError:
    """The exception for an error answer: its problem details, or what a proxy's page allows."""
    status = response.status_code
    details = Problem()
    if response.headers.get("content-type", "").startswith(("application/problem+json", "application/json")):
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            details = _PROBLEM.decode(response.content)
    return problem_class(status)(
        status=status,
        title=details.title or response.reason_phrase,
        type=details.type,
        detail=details.detail,
        instance=details.instance or response.request.url.path,
        errors=details.errors,
        request_id=response.headers.get("x-request-id"),
        retry_after=retry_after(response),
        attempts=attempts,
    )


# -- tasks ----------------------------------------------------------------------------------


def submit(spec: TaskSpec, idempotency_key: str | None) -> Call[Submitted]:
    """With an ``Idempotency-Key`` (a new one unless given), so a resend is answered with the
    task the first attempt created: safe to send again whatever happened to the first."""
    key = idempotency_key or str(uuid.uuid4())
    return _posting("/tasks/", _submitted, Resend.SAFE, spec.body(), **{"Idempotency-Key": key})


def submit_many(specs: Iterable[TaskSpec]) -> Call[Batch]:
    """No Idempotency-Key on batches: sent again only if the first was surely not acted on."""
    body = BatchBody(items=[spec.body() for spec in specs])
    return _posting("/tasks/batch", _json(Batch), Resend.IF_NOT_ACTED_ON, body)


def get(task_id: int, *, wait_s: float = 0.0) -> Call[Task]:
    params: Params = {"wait": round(wait_s, 3)} if wait_s > 0 else {}
    return Call("GET", f"/tasks/{task_id}", _TASK, Resend.SAFE, params=params, holds_s=wait_s)


def get_detail(task_id: int) -> Call[TaskDetail]:
    return Call("GET", f"/tasks/{task_id}/detail", _json(TaskDetail), Resend.SAFE)


def events_path(task_id: int) -> str:
    return f"/tasks/{task_id}/events"


def list_page(
    *,
    status: str | None,
    type: str | None,
    queue: str | None,
    tag: str | Iterable[str] | None = None,
    owner: str | None = None,
    limit: int,
    cursor: str | None,
) -> Call[TaskPage]:
    """``tag``: one, or several (repeated ``tag=``: tasks with all of them). ``owner``:
    only that owner's tasks (another's than the caller's needs ``tasks:admin``)."""
    given = {"status": status, "type": type, "queue": queue, "owner": owner, "cursor": cursor}
    params: dict[str, str | int | float | Sequence[str]] = {
        name: value for name, value in given.items() if value is not None
    }
    if tag is not None:
        params["tag"] = [tag] if isinstance(tag, str) else list(tag)
    params["limit"] = limit
    return Call("GET", "/tasks", _json(TaskPage), Resend.SAFE, params=params)


def cancel(task_id: int) -> Call[Task]:
    """Safe to resend: the state it asks for is final. A resend after a lost answer finds
    the task CANCELLED already and gets a 409, which the client reconciles (``sync.py``)."""
    return Call("POST", f"/tasks/{task_id}/cancel", _TASK, Resend.SAFE)


def retry(task_id: int) -> Call[Task]:
    """Not resent after a lost answer: a task that failed again meanwhile would run a third time."""
    return Call("POST", f"/tasks/{task_id}/retry", _TASK, Resend.IF_NOT_ACTED_ON)


def bulk(action: str, filters: Mapping[str, Any], *, limit: int, cursor: str | None) -> Call[BulkResult]:
    """Safe to resend (the API says so): what changed no longer matches the filter.
    ``filters``: ``status``, ``type``, ``queue``, ``tags``, ``created_after``, ``created_before``,
    ``owner``."""
    body = FilterBody(**filters, limit=limit, cursor=cursor)
    return _posting(f"/tasks/{action}", _BULK, Resend.SAFE, body)


def add_up(total: BulkResult | None, one: BulkResult) -> BulkResult:
    if total is None:
        return one
    return BulkResult(
        matched=total.matched + one.matched, changed=total.changed + one.changed, next_cursor=one.next_cursor
    )


# -- workflows ------------------------------------------------------------------------------


def submit_workflow(
    steps: Iterable[Step],
    name: str | None,
    tags: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> Call[Workflow]:
    """No Idempotency-Key on workflows: sent again only if surely not acted on."""
    body = WorkflowBody(
        name=name,
        tags=list(tags),
        metadata=None if metadata is None else dict(metadata),
        steps=[
            StepBody(
                name=step.name,
                type=step.type,
                input_data=step.input,
                after=list(step.after),
                run_anyway=step.run_anyway,
                priority=step.priority,
                queue=step.queue,
                tags=list(step.tags),
                metadata=None if step.metadata is None else dict(step.metadata),
            )
            for step in steps
        ],
    )
    return _posting("/workflows", _WORKFLOW, Resend.IF_NOT_ACTED_ON, body)


def get_workflow(workflow_id: int) -> Call[Workflow]:
    return Call("GET", f"/workflows/{workflow_id}", _WORKFLOW, Resend.SAFE)


def cancel_workflow(workflow_id: int) -> Call[Workflow]:
    """Safe to resend: cancelling a cancelled workflow answers it as it is."""
    return Call("POST", f"/workflows/{workflow_id}/cancel", _WORKFLOW, Resend.SAFE)


# -- queues ---------------------------------------------------------------------------------


def list_queues() -> Call[list[QueueState]]:
    return Call("GET", "/queues", _then(_json(QueueList), lambda page: page.items), Resend.SAFE)


def pause_queue(name: str) -> Call[QueueState]:
    return Call("POST", f"/queues/{_segment(name)}/pause", _QUEUE, Resend.SAFE)


def resume_queue(name: str) -> Call[QueueState]:
    return Call("POST", f"/queues/{_segment(name)}/resume", _QUEUE, Resend.SAFE)


# -- schedules ------------------------------------------------------------------------------


def create_schedule(
    name: str,
    type: str,
    input: Any,
    *,
    cron: str | None,
    timezone: str | None,
    every_s: int | None,
    queue: str | None,
    priority: int | None,
    catch_up: CatchUp | None,
    catch_up_limit: int | None,
) -> Call[Schedule]:
    """Not resent after a lost answer: a resend of one that went through is a 409 (name taken)."""
    body = ScheduleBody(
        name=name,
        type=type,
        input_data=input,
        cron=cron,
        timezone=timezone,
        every_s=every_s,
        queue=queue,
        priority=priority,
        catch_up=catch_up,
        catch_up_limit=catch_up_limit,
    )
    return _posting("/schedules", _SCHEDULE, Resend.IF_NOT_ACTED_ON, body)


def list_schedules() -> Call[list[Schedule]]:
    return Call("GET", "/schedules", _then(_json(ScheduleList), lambda page: page.items), Resend.SAFE)


def get_schedule(name: str) -> Call[Schedule]:
    return Call("GET", f"/schedules/{_segment(name)}", _SCHEDULE, Resend.SAFE)


def delete_schedule(name: str) -> Call[None]:
    """Safe to resend: a resend of one that went through is a 404, which the client reconciles."""
    return Call("DELETE", f"/schedules/{_segment(name)}", _nothing, Resend.SAFE)


def pause_schedule(name: str) -> Call[Schedule]:
    return Call("POST", f"/schedules/{_segment(name)}/pause", _SCHEDULE, Resend.SAFE)


def resume_schedule(name: str) -> Call[Schedule]:
    return Call("POST", f"/schedules/{_segment(name)}/resume", _SCHEDULE, Resend.SAFE)


# -- webhooks -------------------------------------------------------------------------------


def create_webhook(
    url: str, events: Iterable[str], description: str | None, secret: str | None
) -> Call[RegisteredWebhook]:
    """Not resent after a lost answer: a resend of one that went through registers a second
    endpoint, and the first one's secret would be lost with the answer."""
    body = WebhookBody(url=url, events=list(events), description=description, secret=secret)
    return _posting("/webhooks", _json(RegisteredWebhook), Resend.IF_NOT_ACTED_ON, body)


def list_webhooks() -> Call[list[WebhookEndpoint]]:
    return Call("GET", "/webhooks", _then(_json(WebhookList), lambda page: page.items), Resend.SAFE)


def delete_webhook(endpoint_id: int) -> Call[None]:
    """Safe to resend: a resend of one that went through is a 404, which the client reconciles."""
    return Call("DELETE", f"/webhooks/{endpoint_id}", _nothing, Resend.SAFE)


def deliveries_page(
    *, status: str | None, task_id: int | None, endpoint_id: int | None, limit: int, before: int | None
) -> Call[DeliveryPage]:
    given = {"status": status, "task_id": task_id, "endpoint_id": endpoint_id, "before": before}
    params: dict[str, str | int | float | Sequence[str]] = {
        name: value for name, value in given.items() if value is not None
    }
    params["limit"] = limit
    return Call("GET", "/webhooks/deliveries", _json(DeliveryPage), Resend.SAFE, params=params)


def retry_delivery(delivery_id: int) -> Call[WebhookDelivery]:
    """Not resent after a lost answer, as a task's retry: the resend of one that went through
    is a 404 (the delivery is no longer FAILED), and one that failed again would be sent again."""
    path = f"/webhooks/deliveries/{delivery_id}/retry"
    return Call("POST", path, _json(WebhookDelivery), Resend.IF_NOT_ACTED_ON)


# -- what both clients share besides calls --------------------------------------------------

DEFAULT_URL = "http://127.0.0.1:8005"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# An event stream is quiet between changes but for a keep-alive comment every
# TASKCORE_WAIT_RECHECK_S (5 s by default): this long without a byte means
# the connection is gone, and the client reconnects.
STREAM_READ_TIMEOUT_S = 60.0
# Between long polls that the API answered early (TASKCORE_WAIT_MAX_S set low) at least this long.
MIN_POLL_INTERVAL_S = 0.5


def base_url(given: str | None) -> str:
    """The API's URL: as given, else ``$TASKCORE_URL``, else ``taskcore dev``'s default."""
    return (given or os.environ.get("TASKCORE_URL") or DEFAULT_URL).rstrip("/")


def token_from_env() -> str | None:
    return os.environ.get("TASKCORE_TOKEN") or None


def timeout_of(call: Call[Any], timeout: httpx.Timeout) -> httpx.Timeout:
    """A long poll may be held ``holds_s`` on purpose: the read timeout starts after that."""
    if not call.holds_s or timeout.read is None:
        return timeout
    return httpx.Timeout(
        connect=timeout.connect, read=timeout.read + call.holds_s, write=timeout.write, pool=timeout.pool
    )


def stream_timeout(timeout: httpx.Timeout) -> httpx.Timeout:
    read = None if timeout.read is None else max(timeout.read, STREAM_READ_TIMEOUT_S)
    return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)


def user_agent() -> str:
    return f"taskcore-client/{_version()} httpx/{httpx.__version__}"


def _version() -> str:
    try:
        return importlib.metadata.version("taskcore")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Polls:
    """``wait``'s long polls: each as long as the API holds one, until the deadline."""

    def __init__(self, timeout: float | None, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.deadline = None if timeout is None else clock() + max(0.0, timeout)
        self.asked_at = 0.0
        self.asked_s = 0.0

    def next_wait(self) -> float:
        """Seconds the next long poll asks for (0: a plain read, the deadline has passed)."""
        left = MAX_WAIT_S if self.deadline is None else min(MAX_WAIT_S, self.deadline - self.clock())
        self.asked_at, self.asked_s = self.clock(), max(0.0, left)
        return self.asked_s

    def pause(self, task: Task) -> float | None:
        """``None`` when ``wait`` is done with ``task``; else seconds to sleep before the next poll."""
        if task.is_final or self.asked_s <= 0:
            return None
        spent = self.clock() - self.asked_at
        return max(0.0, min(MIN_POLL_INTERVAL_S, self.asked_s) - spent)


class EventStream:
    """Where a task's event stream is: the task as last seen, its version, and the server's
    reconnection delay."""

    def __init__(self, task_id: int, *, progress: bool = True) -> None:
        self.path = events_path(task_id)
        self.progress = progress
        self.seen: int | None = None
        self.task: Task | None = None
        self.reconnect_s = 2.0
        self.probe = Call("GET", self.path, _nothing, Resend.SAFE)

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self.seen is not None:
            headers["Last-Event-ID"] = str(self.seen)
        return headers

    def read(self, event: str, data: str, event_id: str, retry_ms: int | None) -> Task | None:
        """The task after an event: a ``status`` event carries it whole, a ``progress``
        event the fields a report changes, merged into the task last seen (``None`` when
        progress is not wanted). ``None`` for anything else (kept for what it says)."""
        if retry_ms is not None:
            self.reconnect_s = retry_ms / 1000
        if event == "status":
            task = self._decode(_TASK_DECODER, event, data)
        elif event == "progress" and self.task is not None:
            report = self._decode(_PROGRESS_DECODER, event, data)
            task = msgspec.structs.replace(
                self.task,
                progress=report.progress,
                progress_message=report.progress_message,
                progress_at=report.progress_at,
                updated_at=report.updated_at,
            )
        else:
            return None  # other kinds, from newer servers, are not this client's to read
        if event_id.isdigit():
            self.seen = int(event_id)
        self.task = task
        return task if event == "status" or self.progress else None

    def _decode(self, decoder: msgspec.json.Decoder[T], event: str, data: str) -> T:
        try:
            return decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            message = f"a {event} event of {self.path} this client cannot read: {exc}"
            raise UnexpectedResponse(message, status=200, body=data.encode()) from exc


_TASK_DECODER = msgspec.json.Decoder(Task)
_PROGRESS_DECODER = msgspec.json.Decoder(Progress)
