"""``POST /tasks/cancel`` and ``POST /tasks/retry``: every task a filter matches.

Each task changes as ``POST /tasks/{id}/cancel`` (or ``/retry``) would change
it, a batch at a time (``taskcore.submit.bulk``); the answer counts what
matched and what changed, and a ``next_cursor`` when the call stopped at its
``limit``. A caller acts on its own tasks; ``owner`` (one, or every owner
without it) needs ``tasks:admin``. An empty filter is refused: ``{}`` from an
admin would be every task of every owner, a mistake more often than a wish.

The body is decoded strictly, as its schema says. Litestar converts bodies
leniently (a string for a number, a number for a time since 1970), which
for a filter deciding what a bulk action changes would select other tasks
than the client meant.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Controller, Request, post
from litestar.params import JSONBody

from taskcore.entrypoints.http.auth import WRITE, Principal, asked_owner, authorized
from taskcore.entrypoints.http.cursor import decode_cursor, encode_position
from taskcore.entrypoints.http.schemas import Tag
from taskcore.entrypoints.http.tasks_controller import AUTH, Tasks, problems
from taskcore.errors import InvalidInput
from taskcore.model.query import TaskQuery
from taskcore.model.status import TaskStatus
from taskcore.model.tags import MAX_TAGS, check_tags
from taskcore.submit.bulk import MAX_BULK, BulkOutcome

_FILTERS = ("status", "type", "queue", "tags", "created_after", "created_before", "owner")
RESULT = (
    "`matched`: the tasks that matched (at most `limit`), `changed`: those this call changed "
    "(the others finished or changed meanwhile), `next_cursor`: set when it stopped at `limit`."
)


F = TypeVar("F", bound="TaskFilter")


class TaskFilter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The fields both actions take; each declares the statuses it applies to."""

    status: str | None = None
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Only this type.")] | None = (
        None
    )
    queue: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=63, description="Only this queue.")] | None
    ) = None
    tags: (
        Annotated[
            list[Tag],
            msgspec.Meta(min_length=1, max_length=MAX_TAGS, description="Only tasks with all these tags."),
        ]
        | None
    ) = None
    created_after: (
        Annotated[datetime, msgspec.Meta(tz=True, description="Only tasks created after this (RFC 3339).")]
        | None
    ) = None
    created_before: (
        Annotated[datetime, msgspec.Meta(tz=True, description="Only tasks created before this (RFC 3339).")]
        | None
    ) = None
    owner: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=255,
                description=(
                    "Only this owner's tasks; needs `tasks:admin` unless it is the caller. Without it an"
                    " admin acts on every owner's tasks, anyone else on their own."
                ),
            ),
        ]
        | None
    ) = None
    limit: Annotated[
        int, msgspec.Meta(ge=1, le=MAX_BULK, description="At most this many tasks are looked at.")
    ] = MAX_BULK
    cursor: (
        Annotated[str, msgspec.Meta(max_length=200, description="`next_cursor` of the previous call: go on.")]
        | None
    ) = None

    def query(self, caller: Principal) -> TaskQuery:
        """The tasks the caller may change that this filter selects."""
        if all(getattr(self, name) is None for name in _FILTERS):
            raise InvalidInput(f"give at least one filter ({', '.join(_FILTERS)}); {{}} would be every task")
        return TaskQuery(
            owner=asked_owner(caller, self.owner),
            status=None if self.status is None else TaskStatus(self.status),
            type=self.type,
            queue=self.queue,
            tags=check_tags(self.tags or ()),
            created_after=self.created_after,
            created_before=self.created_before,
            before=decode_cursor(self.cursor) if self.cursor else None,
        )


class CancellableStatus(enum.StrEnum):
    """The statuses a cancel applies to (those `Task.cancel` accepts)."""

    PENDING = TaskStatus.PENDING.value
    PROCESSING = TaskStatus.PROCESSING.value


class RetryableStatus(enum.StrEnum):
    """The statuses a retry applies to (those `Task.retry` accepts)."""

    FAILED = TaskStatus.FAILED.value
    CANCELLED = TaskStatus.CANCELLED.value


class CancelFilter(TaskFilter, forbid_unknown_fields=True, kw_only=True):
    status: Annotated[CancellableStatus | None, msgspec.Meta(description="Only tasks in this status.")] = None


class RetryFilter(TaskFilter, forbid_unknown_fields=True, kw_only=True):
    status: Annotated[RetryableStatus | None, msgspec.Meta(description="Only tasks in this status.")] = None


async def _strictly(request: Request[Any, Any, Any], kind: type[F]) -> F:
    """The body as ``kind``, decoded strictly (see the module)."""
    try:
        return msgspec.json.decode(await request.body(), type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"the filter does not match the schema: {exc}") from exc


class BulkResult(msgspec.Struct, kw_only=True):
    matched: int  # tasks that matched the filter when read
    changed: int  # of those, the ones this call changed; the others finished or changed meanwhile
    next_cursor: str | None  # set when the call stopped at its limit: pass it back as `cursor` to go on

    @classmethod
    def of(cls, outcome: BulkOutcome) -> BulkResult:
        position = outcome.resume_before
        return cls(
            matched=outcome.matched,
            changed=outcome.changed,
            next_cursor=None if position is None else encode_position(*position),
        )


class BulkController(Controller):
    """``data`` is Litestar's lenient reading of the body: it documents the
    body's schema and answers a malformed one; the filter used is the strict
    reading (``_strictly``)."""

    path = "/tasks"
    tags = ["tasks"]

    @post(
        "/cancel",
        status_code=200,
        operation_id="cancelTasks",
        summary="Cancel every PENDING or PROCESSING task a filter matches",
        response_description=RESULT,
        responses=problems(400, *AUTH, 413, 422, 503),
    )
    async def cancel_tasks(
        self, data: JSONBody[CancelFilter], request: Request[Any, Any, Any], tasks: Tasks
    ) -> BulkResult:
        """As `POST /tasks/{id}/cancel` for each one, in batches: a PROCESSING
        task's worker stops it at its next heartbeat. Safe to repeat: what was
        cancelled no longer matches. At least one filter is required."""
        caller = authorized(request, WRITE)
        strict = await _strictly(request, CancelFilter)
        return BulkResult.of(await tasks.service.cancel_matching(strict.query(caller), limit=strict.limit))

    @post(
        "/retry",
        status_code=200,
        operation_id="retryTasks",
        summary="Re-queue every FAILED or CANCELLED task a filter matches",
        response_description=RESULT,
        responses=problems(400, *AUTH, 413, 422, 503),
    )
    async def retry_tasks(
        self, data: JSONBody[RetryFilter], request: Request[Any, Any, Any], tasks: Tasks
    ) -> BulkResult:
        """As `POST /tasks/{id}/retry` for each one, in batches (one whose unique
        key another unfinished task holds is left as it is). Safe to repeat:
        what was retried no longer matches while it runs. At least one filter
        is required."""
        caller = authorized(request, WRITE)
        strict = await _strictly(request, RetryFilter)
        return BulkResult.of(await tasks.service.retry_matching(strict.query(caller), limit=strict.limit))
