"""The HTTP contract as msgspec structs, mapped to and from core types here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from taskcore.errors import InvalidInput
from taskcore.model.attempts import Attempt, AttemptOutcome
from taskcore.model.status import TaskStatus
from taskcore.model.tags import MAX_METADATA_BYTES, MAX_TAG_LENGTH, MAX_TAGS, TAG_CHARSET, TAG_PATTERN
from taskcore.model.task import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, Task
from taskcore.model.uniqueness import MAX_UNIQUE_KEY_LENGTH
from taskcore.model.webhooks import MAX_URL_LENGTH
from taskcore.model.workflows import MAX_AFTER

MAX_DELAY_S = 366 * 86_400
# Later run_at values count as this one, so that adding seconds to it (the
# service's own clock, a retry) cannot overflow what a datetime holds.
LATEST_RUN_AT = datetime(9999, 12, 31, tzinfo=UTC)


Tag = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_TAG_LENGTH,
        pattern=TAG_PATTERN,
        description=f"1 to {MAX_TAG_LENGTH} {TAG_CHARSET}.",
        examples=["customer:42"],
    ),
]
Tags = Annotated[
    list[Tag],
    msgspec.Meta(
        max_length=MAX_TAGS,
        description=(
            f"Up to {MAX_TAGS} labels to find the task by (`GET /tasks?tag=`); repeats are dropped, "
            "the order is kept."
        ),
    ),
]
Metadata = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=(
            f"A JSON object (at most {MAX_METADATA_BYTES} bytes as compact JSON) kept and returned with "
            "the task; taskcore never reads it."
        )
    ),
]


class SubmitTask(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    input_data: Annotated[
        Any, msgspec.Meta(description="The handler's input; its type is the handler's parameter type.")
    ]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Registered task type.")] = (
        "reverse"
    )
    run_at: (
        Annotated[
            datetime,
            msgspec.Meta(
                tz=True,
                description=(
                    "Run no earlier than this (RFC 3339, with an offset). A time in the past, or now, "
                    "means run now; there is no upper limit."
                ),
            ),
        ]
        | None
    ) = None
    delay_s: (
        Annotated[
            float,
            msgspec.Meta(ge=0, le=MAX_DELAY_S, description="Run no earlier than this many seconds from now."),
        ]
        | None
    ) = None
    priority: Annotated[
        int,
        msgspec.Meta(
            ge=MIN_PRIORITY,
            le=MAX_PRIORITY,
            description="0 to 9: of the tasks waiting for a worker, higher ones start first.",
        ),
    ] = DEFAULT_PRIORITY
    queue: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=63,
                description="A known queue to wait in instead of its handler's (`GET /queues` lists them).",
            ),
        ]
        | None
    ) = None
    after: Annotated[
        list[Annotated[int, msgspec.Meta(ge=1)]],
        msgspec.Meta(
            max_length=MAX_AFTER,
            description=(
                "Ids of tasks (yours) it runs after: it starts once they have ended, and is cancelled "
                "if one FAILED or was CANCELLED unless `run_anyway`."
            ),
        ),
    ] = msgspec.field(default_factory=list)
    run_anyway: Annotated[
        bool, msgspec.Meta(description="Start after the `after` tasks end even if one failed.")
    ] = False
    unique_key: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=MAX_UNIQUE_KEY_LENGTH,
                description=(
                    "While an unfinished (PENDING or PROCESSING) task of this type and owner has this key,"
                    " a submit returns that task (200, `Deduplicated: true`) instead of creating one."
                    " Replaces the key the handler derives from the input, if it does."
                ),
            ),
        ]
        | None
    ) = None
    callback_url: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=MAX_URL_LENGTH,
                description=(
                    "An http(s) URL told when the task ends (COMPLETED, FAILED or CANCELLED): a POST signed"
                    " as Standard Webhooks says with the deployment's TASKCORE_WEBHOOK_SECRET, retried for"
                    " up to a day. Loopback, private and link-local addresses are refused unless"
                    " TASKCORE_WEBHOOK_ALLOW_PRIVATE."
                ),
            ),
        ]
        | None
    ) = None
    tags: Tags = msgspec.field(default_factory=list)
    metadata: Metadata = msgspec.field(default_factory=dict)

    def delay(self, now: datetime) -> timedelta | None:
        """When the task may run, as a delay from ``now`` (``None``: now);
        ``InvalidInput`` if both ways are given.

        A ``run_at`` that has passed means now: a client's clock a little ahead
        of ours, or a request retried late, should not turn "at 12:00" into an
        error, and running late is what a scheduler does with a missed time
        anyway. A ``run_at`` after ``LATEST_RUN_AT`` counts as that.
        """
        if self.run_at is not None and self.delay_s is not None:
            raise InvalidInput("give run_at or delay_s, not both")
        if self.delay_s is not None:
            return timedelta(seconds=self.delay_s) if self.delay_s > 0 else None
        if self.run_at is None:
            return None
        # Subtracting never overflows; converting year 1 or 9999 to UTC can.
        delay = min(self.run_at - now, LATEST_RUN_AT - now)
        return delay if delay > timedelta(0) else None


class TaskView(msgspec.Struct, kw_only=True):
    id: int
    type: str
    status: TaskStatus
    result: Any
    error: str | None
    attempts: int
    max_attempts: int
    priority: int
    queue: str
    after: list[int]
    blocked: bool  # PENDING, waiting for the tasks it runs after
    workflow_id: int | None
    step: str | None
    unique_key: str | None
    callback_url: str | None
    created_at: datetime
    updated_at: datetime
    run_at: datetime
    finished_at: datetime | None
    progress: Annotated[
        float | None,
        msgspec.Meta(
            description=(
                "How far the running attempt (or the last one) got, 0 to 1, as its handler reported; "
                "null before its first report; 1 once COMPLETED."
            )
        ),
    ]
    progress_message: Annotated[str | None, msgspec.Meta(description="The last report's message.")]
    progress_at: Annotated[datetime | None, msgspec.Meta(description="When the last report was stored.")]
    tags: Annotated[list[str], msgspec.Meta(description="Its labels, as submitted (repeats dropped).")]
    metadata: Annotated[dict[str, Any], msgspec.Meta(description="Its metadata as submitted; `{}` if none.")]

    @classmethod
    def of(cls, task: Task) -> TaskView:
        return cls(
            id=task.id,
            type=task.type,
            status=task.status,
            result=task.result,
            error=task.error,
            attempts=task.attempts,
            max_attempts=task.max_attempts,
            priority=task.priority,
            queue=task.queue,
            after=list(task.after),
            blocked=task.blocked,
            workflow_id=task.workflow_id,
            step=task.step,
            unique_key=task.unique_key,
            callback_url=task.callback_url,
            created_at=task.created_at,
            updated_at=task.updated_at,
            run_at=task.run_at,
            finished_at=task.finished_at,
            progress=task.progress,
            progress_message=task.progress_message,
            progress_at=task.progress_at,
            tags=list(task.tags),
            metadata=task.metadata,
        )


class AttemptView(msgspec.Struct, kw_only=True):
    number: Annotated[
        int, msgspec.Meta(description="The task's attempt count at the claim; a retry starts at 1.")
    ]
    claimed_at: datetime
    ended_at: Annotated[datetime | None, msgspec.Meta(description="Null while it runs.")]
    outcome: Annotated[
        AttemptOutcome | None,
        msgspec.Meta(
            description=(
                "How it ended: COMPLETED, FAILED (raised or timed out), CANCELLED (while it ran), "
                "ABANDONED (its lease lapsed), HANDED_BACK (its worker shut down); null while it runs."
            )
        ),
    ]
    error: Annotated[str | None, msgspec.Meta(description="Its error, cut to 200 characters.")]

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptView:
        return cls(
            number=attempt.number,
            claimed_at=attempt.claimed_at,
            ended_at=attempt.ended_at,
            outcome=attempt.outcome,
            error=attempt.error,
        )


class TaskDetailView(TaskView, kw_only=True):
    """A task as ``TaskView`` shows it, plus what a task page shows and a
    listing or a poll does not need: its input, owner, the running attempt's
    start and lease, and its last attempts."""

    input_data: Annotated[Any, msgspec.Meta(description="The input it was submitted with.")]
    owner: Annotated[str | None, msgspec.Meta(description="The `sub` of the token that submitted it.")]
    started_at: Annotated[
        datetime | None, msgspec.Meta(description="When the running (or last) attempt was claimed.")
    ]
    lease_until: Annotated[
        datetime | None, msgspec.Meta(description="While PROCESSING: when its worker must renew its lease.")
    ]
    attempt_log: Annotated[
        list[AttemptView],
        msgspec.Meta(description="Its last 20 attempts, oldest first: each claim, and how it ended."),
    ]

    @classmethod
    def of(cls, task: Task) -> TaskDetailView:
        return cls(
            **msgspec.structs.asdict(TaskView.of(task)),
            input_data=task.input,
            owner=task.owner,
            started_at=task.started_at,
            lease_until=task.lease_until,
            attempt_log=[AttemptView.of(a) for a in task.attempt_log],
        )


class ProgressView(msgspec.Struct, kw_only=True):
    """A ``progress`` event's data: the fields of ``TaskView`` that a progress
    report changes, under the same names, so a client merges it into the task
    it holds. Small on purpose: a task's input can be large, and a running
    task may report twice a second."""

    id: int
    progress: float | None
    progress_message: str | None
    progress_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, task: Task) -> ProgressView:
        return cls(
            id=task.id,
            progress=task.progress,
            progress_message=task.progress_message,
            progress_at=task.progress_at,
            updated_at=task.updated_at,
        )


class TaskPage(msgspec.Struct, kw_only=True):
    items: list[TaskView]
    next_cursor: str | None = None


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
