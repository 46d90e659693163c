"""The wire format, as this client reads and writes it.

The client keeps its own structs instead of importing the server's: it must
not need Litestar (or the core) to talk to an API, and it should keep working
against a server one version apart. So every answer is decoded leniently in
the one way that matters for that: fields it does not know are ignored, and
fields an older server may not send have defaults. Answers are frozen: a
``Task`` is a snapshot of the task when the API answered, not a live object.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import msgspec

T = TypeVar("T")


class TaskStatus(enum.StrEnum):
    """A task's status. A ``StrEnum``, so it equals the core's ``TaskStatus`` and plain strings."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class Task(msgspec.Struct, kw_only=True, frozen=True):
    """A task as ``GET /tasks/{id}`` answers it."""

    id: int
    type: str
    status: TaskStatus
    created_at: datetime
    updated_at: datetime
    run_at: datetime
    result: Any = None
    error: str | None = None  # the last failure, kept while a retry is pending
    attempts: int = 0
    max_attempts: int = 0
    priority: int = 0
    queue: str = "default"
    after: tuple[int, ...] = ()
    blocked: bool = False  # PENDING, waiting for the tasks it runs after
    workflow_id: int | None = None
    step: str | None = None
    unique_key: str | None = None
    finished_at: datetime | None = None
    schedule: str | None = None  # the periodic schedule that created it, on servers that have them
    fire_at: datetime | None = None
    tags: tuple[str, ...] = ()  # as submitted; an older server sends none
    metadata: dict[str, Any] = {}
    callback_url: str | None = None  # told when it ends (a completion webhook)
    progress: float | None = None  # 0 to 1, as its handler last reported; 1 once COMPLETED
    progress_message: str | None = None
    progress_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        """COMPLETED, FAILED or CANCELLED: it will not change unless retried."""
        return self.status.is_final

    def result_as(self, kind: builtins.type[T]) -> T:
        """The result converted to ``kind`` (a ``msgspec.Struct``, a dataclass,
        ``datetime``, ...): JSON carries no types, the handler's return type is
        the caller's knowledge."""
        return msgspec.convert(self.result, kind, strict=False)


class Attempt(msgspec.Struct, kw_only=True, frozen=True):
    """One claim of a task by a worker, and how it ended (``TaskDetail.attempt_log``)."""

    number: int  # the task's attempt count at the claim; a retry starts again at 1
    claimed_at: datetime
    ended_at: datetime | None = None  # None while it runs
    outcome: str | None = None  # COMPLETED, FAILED, CANCELLED, ABANDONED, HANDED_BACK; None while it runs
    error: str | None = None  # cut to 200 characters


class TaskDetail(Task, kw_only=True, frozen=True):
    """A task as ``GET /tasks/{id}/detail`` answers it: ``Task``'s fields, plus
    what a task page shows and a poll does not need."""

    input: Any = msgspec.field(default=None, name="input_data")
    owner: str | None = None  # the ``sub`` of the token that submitted it
    started_at: datetime | None = None  # when the running (or last) attempt was claimed
    lease_until: datetime | None = None  # while PROCESSING: when its worker must renew its lease
    attempt_log: tuple[Attempt, ...] = ()  # the last 20 attempts, oldest first


class Progress(msgspec.Struct, kw_only=True, frozen=True):
    """A ``progress`` event's data: the task's fields a progress report changes."""

    id: int
    updated_at: datetime
    progress: float | None = None
    progress_message: str | None = None
    progress_at: datetime | None = None


class TaskPage(msgspec.Struct, kw_only=True, frozen=True):
    """One page of ``GET /tasks``, newest first; ``next_cursor`` is ``None`` on the last."""

    items: list[Task]
    next_cursor: str | None = None


class Submitted(msgspec.Struct, kw_only=True, frozen=True):
    """What a submit did: ``task`` is the one doing the work, new or not."""

    task: Task
    deduplicated: bool  # an unfinished task held the unique key: that task, nothing created
    replayed: bool  # the Idempotency-Key was used before: that use's answer

    @property
    def created(self) -> bool:
        """Whether this submit's first use stored a new task."""
        return not self.deduplicated


class Batch(msgspec.Struct, kw_only=True, frozen=True):
    """``POST /tasks/batch``: the tasks in the order given."""

    items: list[Task]
    deduplicated: list[int] = msgspec.field(default_factory=list)  # positions answered by a holder


class BulkResult(msgspec.Struct, kw_only=True, frozen=True):
    """A bulk cancel or retry: ``changed`` of ``matched``; ``next_cursor`` set if it stopped at a limit."""

    matched: int
    changed: int
    next_cursor: str | None = None


class Workflow(msgspec.Struct, kw_only=True, frozen=True):
    """A workflow and its steps (each an ordinary task)."""

    id: int
    status: str  # RUNNING, then COMPLETED, FAILED or CANCELLED
    created_at: datetime
    steps: list[Task]
    name: str | None = None

    def step(self, name: str) -> Task:
        """The step called ``name``; ``KeyError`` if there is none."""
        for task in self.steps:
            if task.step == name:
                return task
        raise KeyError(name)


class QueueState(msgspec.Struct, kw_only=True, frozen=True):
    """A named queue: paused or not, and what it holds."""

    name: str
    paused: bool
    ready: int | None = None  # wake-ups at the broker; None if it did not answer
    dead_letters: int | None = None
    running: int = 0
    waiting: int = 0  # PENDING and due
    scheduled: int = 0  # PENDING, due later


class Schedule(msgspec.Struct, kw_only=True, frozen=True):
    """A periodic schedule (``/schedules``)."""

    name: str
    type: str
    cron: str | None = None
    timezone: str = "UTC"
    every_s: int | None = None
    queue: str | None = None
    priority: int | None = None
    catch_up: str = "skip"
    catch_up_limit: int = 100
    owner: str | None = None
    system: bool = False
    paused: bool = False
    retired_at: datetime | None = None
    next_fire_at: datetime | None = None
    last_fire_at: datetime | None = None
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class WebhookEndpoint(msgspec.Struct, kw_only=True, frozen=True):
    """A registered webhook endpoint (``/webhooks``); its secret is not shown again."""

    id: int
    url: str
    created_at: datetime
    events: tuple[str, ...] = ()  # task.completed, task.failed, task.cancelled; empty: all
    description: str | None = None


class RegisteredWebhook(WebhookEndpoint, kw_only=True, frozen=True):
    """``webhooks.create``'s answer: the endpoint and its signing secret, shown only here."""

    secret: str  # a whsec_ key: verify deliveries with it (Standard Webhooks)


class WebhookDelivery(msgspec.Struct, kw_only=True, frozen=True):
    """One task end sent (or to send) to one URL: a registered endpoint or the task's ``callback_url``."""

    id: int
    message_id: str  # the webhook-id header: the same on every attempt, for receivers to drop repeats
    task_id: int
    event: str
    url: str
    status: str  # PENDING, DELIVERED or FAILED
    created_at: datetime
    endpoint_id: int | None = None  # None: the task's own callback_url
    attempts: int = 0
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_status: int | None = None  # the receiver's last HTTP status
    last_error: str | None = None


class DeliveryPage(msgspec.Struct, kw_only=True, frozen=True):
    """One page of deliveries, newest first; pass ``next_before`` as ``before`` for the next (None: last)."""

    items: list[WebhookDelivery]
    next_before: int | None = None


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str = ""
    status: int | None = None
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class QueueList(msgspec.Struct):
    items: list[QueueState]


class ScheduleList(msgspec.Struct):
    items: list[Schedule]


class WebhookList(msgspec.Struct):
    items: list[WebhookEndpoint]


# -- what the client sends ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    """One task to submit, as ``Client.submit`` takes it (``submit_many`` takes a list).

    ``delay`` (seconds or a ``timedelta``) or ``run_at`` (a timezone-aware
    ``datetime``) schedule it; ``after`` names tasks it runs after. ``tags``
    (up to 16) label it for ``list(tag=...)``; ``metadata`` (a JSON object, up
    to 4 KiB) is kept and returned with it. ``callback_url`` is POSTed the
    task (signed, Standard Webhooks) when it ends.
    """

    type: str
    input: Any
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    priority: int | None = None
    queue: str | None = None
    unique_key: str | None = None
    after: Sequence[int] = ()
    run_anyway: bool = False
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] | None = None
    callback_url: str | None = None

    def body(self) -> SubmitBody:
        delay = self.delay.total_seconds() if isinstance(self.delay, timedelta) else self.delay
        return SubmitBody(
            type=self.type,
            input_data=self.input,
            delay_s=delay,
            run_at=self.run_at,
            priority=self.priority,
            queue=self.queue,
            unique_key=self.unique_key,
            after=list(self.after),
            run_anyway=self.run_anyway,
            tags=list(self.tags),
            metadata=None if self.metadata is None else dict(self.metadata),
            callback_url=self.callback_url,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One step of a workflow: a task named in the graph, run after the steps ``after`` names."""

    name: str
    type: str
    input: Any
    after: Sequence[str] = ()
    run_anyway: bool = False
    priority: int | None = None
    queue: str | None = None
    tags: Sequence[str] = ()  # besides the workflow's
    metadata: Mapping[str, Any] | None = None  # over the workflow's


# omit_defaults: a field left out is the server's default, whatever it is, not ours.
class SubmitBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    input_data: Any
    delay_s: float | None = None
    run_at: datetime | None = None
    priority: int | None = None
    queue: str | None = None
    unique_key: str | None = None
    after: list[int] = msgspec.field(default_factory=list)
    run_anyway: bool = False
    tags: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] | None = None
    callback_url: str | None = None


class BatchBody(msgspec.Struct, kw_only=True):
    items: list[SubmitBody]


class StepBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    type: str
    input_data: Any
    after: list[str] = msgspec.field(default_factory=list)
    run_anyway: bool = False
    priority: int | None = None
    queue: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] | None = None


class WorkflowBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    steps: list[StepBody]
    name: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] | None = None


class FilterBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A bulk action's filter, plus how far one call goes."""

    status: str | None = None
    type: str | None = None
    queue: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    owner: str | None = None
    tags: list[str] | None = None
    limit: int | None = None
    cursor: str | None = None


CatchUp = Literal["skip", "latest", "all"]


class ScheduleBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    type: str
    input_data: Any = None
    cron: str | None = None
    timezone: str | None = None
    every_s: int | None = None
    queue: str | None = None
    priority: int | None = None
    catch_up: CatchUp | None = None
    catch_up_limit: int | None = None


class WebhookBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    url: str
    events: list[str] = msgspec.field(default_factory=list)
    description: str | None = None
    secret: str | None = None
