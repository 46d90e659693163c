"""``/tasks``: submit, read, list, cancel and retry.

Every route acts for the calling principal: it only ever sees its own tasks
(another owner's id is a 404, exactly like a missing one) unless its token
carries ``tasks:admin``. Writing needs ``tasks:write``, reading ``tasks:read``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from litestar import Controller, HttpMethod, Request, Response, get, post, route
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, Parameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from taskcore.entrypoints.http.auth import READ, WRITE, asked_owner, authorized
from taskcore.entrypoints.http.cursor import decode_cursor, encode_cursor
from taskcore.entrypoints.http.problems import PROBLEM_JSON
from taskcore.entrypoints.http.schemas import (
    Problem,
    ProgressView,
    SubmitTask,
    TaskDetailView,
    TaskPage,
    TaskView,
)
from taskcore.model.query import TaskQuery
from taskcore.model.status import TaskStatus
from taskcore.model.tags import MAX_TAGS, check_tags
from taskcore.model.task import MAX_TASK_ID, Task
from taskcore.ports import Clock, TaskFinder
from taskcore.submit.service import TaskService
from taskcore.submit.waiting import TaskWatcher

_VIEW_ENCODER = msgspec.json.Encoder()
# schema_extra: without it the bound is published as a float (9.223372036854776e+18).
TaskId = Annotated[
    int,
    Parameter(
        ge=1,
        le=MAX_TASK_ID,
        description="The task's id.",
        schema_extra={"minimum": 1, "maximum": MAX_TASK_ID},
    ),
]


def problems(*codes: int) -> dict[int, ResponseSpec]:
    """Document the problem+json answers a route can give (they replace Litestar's generic 400)."""
    return {
        code: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=HTTPStatus(code).phrase,
            generate_examples=False,
        )
        for code in codes
    }


AUTH = (401, 403)
Tasks = NamedDependency["TaskEndpoints"]
AnyRequest = Request[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class TaskEndpoints:
    """What the task routes use, as one dependency: Litestar resolves two or
    more dependencies of a route concurrently in an anyio task group, which
    cost a fifth of the API's CPU on a cached read. The caller comes from the
    request and scopes are checked in the handler, not by a guard (Litestar
    copies the route handler for every guard call)."""

    service: TaskService
    listing: TaskFinder
    watcher: TaskWatcher
    clock: Clock


MAX_WAIT_S = 60
RECONNECT_MS = 2000


def _event(task: Task, sent: Task | None) -> ServerSentEventMessage:
    """A ``progress`` event (``ProgressView``) when the task runs in the same
    attempt as in the last event sent, so only its progress moved; else a
    ``status`` event with the whole task. A stream's first event is always
    ``status``: a client resuming after ``Last-Event-ID`` may have missed
    anything."""
    if sent is not None and task.same_attempt(sent):
        data, event = _VIEW_ENCODER.encode(ProgressView.of(task)), "progress"
    else:
        data, event = _VIEW_ENCODER.encode(TaskView.of(task)), "status"
    return ServerSentEventMessage(data=data.decode(), event=event, id=task.version)


async def _task_events(
    first: Task, changes: AsyncGenerator[Task, None], after: int
) -> AsyncIterator[ServerSentEventMessage]:
    """Each newer version as an event (``_event``); a keep-alive comment when a read found nothing new."""
    seen, sent = after, None
    try:
        task = first
        while True:
            if task.version > seen:
                seen = task.version
                yield _event(task, sent)
                sent = task
            else:
                yield ServerSentEventMessage(data=None, comment="waiting")
            try:
                task = await anext(changes)
            except StopAsyncIteration:
                return
    finally:
        await changes.aclose()


def _location(task_id: int) -> dict[str, str]:
    return {"Location": f"/tasks/{task_id}"}


class TaskController(Controller):
    path = "/tasks"
    tags = ["tasks"]

    @route("/", http_method=HttpMethod.OPTIONS, include_in_schema=False, status_code=204)
    async def allow(self) -> Response[None]:
        """Litestar 2's automatic OPTIONS answer lists only the first method of a
        path (litestar#4169); this one lists them all. Its name sorts first so it
        is registered before the automatic one."""
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @post(
        "/",
        status_code=201,
        operation_id="submitTask",
        summary="Submit a task",
        response_description=(
            "Created: the new task, PENDING, with `Location`. (With an Idempotency-Key used before: "
            "the task its first use answered with, and `Idempotent-Replayed: true`.)"
        ),
        responses={
            200: ResponseSpec(
                data_container=TaskView,
                description=(
                    "Deduplicated (`Deduplicated: true`): an unfinished task of this type and owner has "
                    "the unique key, and is returned instead of a new one; nothing was created."
                ),
                generate_examples=False,
            ),
            **problems(400, *AUTH, 413, 422, 429, 503),
        },
    )
    async def submit(
        self,
        data: JSONBody[SubmitTask],
        request: AnyRequest,
        tasks: Tasks,
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                min_length=1,
                max_length=255,
                description="Retrying with the same key and body returns the original answer.",
            ),
        ] = None,
    ) -> Response[TaskView]:
        """Store the task as PENDING and queue it; answers before it runs. With
        ``run_at`` or ``delay_s`` it is dispatched when due (held by the broker,
        never by a worker); a ``run_at`` that has passed means now. Of the tasks
        waiting for a worker, higher ``priority`` ones start first. With a
        ``unique_key`` (or a handler that derives one) held by an unfinished
        task, that task is the answer (200). The body schema lists the
        registered types, each with its handler's input."""
        caller = authorized(request, WRITE)
        submitted = await tasks.service.submit_detailed(
            data.type,
            data.input_data,
            idempotency_key=idempotency_key,
            unique_key=data.unique_key,
            owner=caller.sub,
            delay=data.delay(tasks.clock.now()),  # the core's clock, the one run_at is computed on
            priority=data.priority,
            queue=data.queue,
            after=data.after,
            run_anyway=data.run_anyway,
            callback_url=data.callback_url,
            tags=data.tags,
            metadata=data.metadata,
        )
        headers = _location(submitted.task.id)
        if submitted.replayed:
            headers["Idempotent-Replayed"] = "true"
        if submitted.deduplicated:
            headers["Deduplicated"] = "true"
        status = 200 if submitted.deduplicated else 201
        return Response(TaskView.of(submitted.task), status_code=status, headers=headers)

    @get(
        "/{task_id:int}",
        operation_id="getTask",
        summary="Read a task",
        responses=problems(400, *AUTH, 404, 422, 503),
    )
    async def read(
        self,
        task_id: TaskId,
        request: AnyRequest,
        tasks: Tasks,
        wait: Annotated[
            float | None,
            Parameter(
                ge=0,
                le=MAX_WAIT_S,
                # ge=0 is falsy, so Litestar would leave the minimum out of the schema.
                schema_extra={"minimum": 0, "maximum": MAX_WAIT_S},
                description=(
                    "Long poll: answer as soon as the task is final (COMPLETED, FAILED or "
                    "CANCELLED), or with its current state after this many seconds "
                    "(cut to `TASKCORE_WAIT_MAX_S`)."
                ),
            ),
        ] = None,
    ) -> TaskView:
        """The task's current status, its progress as its handler reports it,
        and its result once COMPLETED. With ``wait``, the answer waits for the
        task to finish (progress does not end the wait), holding no database
        connection meanwhile."""
        caller = authorized(request, READ)
        if wait:
            return TaskView.of(await tasks.watcher.wait(task_id, owner=caller.owner_filter, timeout_s=wait))
        return TaskView.of(await tasks.service.get(task_id, owner=caller.owner_filter))

    @get(
        "/{task_id:int}/detail",
        operation_id="getTaskDetail",
        summary="Read a task with its input and its last attempts",
        responses=problems(400, *AUTH, 404, 422, 503),
    )
    async def detail(self, task_id: TaskId, request: AnyRequest, tasks: Tasks) -> TaskDetailView:
        """What ``GET /tasks/{id}`` answers, plus its input, owner, the
        running attempt's start and lease, and its last 20 attempts (each
        claim and how it ended): what the dashboard's task page shows."""
        caller = authorized(request, READ)
        return TaskDetailView.of(await tasks.service.get(task_id, owner=caller.owner_filter))

    @get(
        "/{task_id:int}/events",
        operation_id="streamTaskEvents",
        summary="Stream a task's status changes and progress (Server-Sent Events)",
        media_type="text/event-stream",
        responses={
            204: ResponseSpec(
                data_container=None, description="`Last-Event-ID` already names the task's final state."
            ),
            **problems(400, *AUTH, 404, 422, 503),
        },
        response_description=(
            "`text/event-stream`, each event's `id` the task's version: a `status` event per change, "
            "`data` = the task as `GET /tasks/{id}` returns it; while it runs, a `progress` event "
            "per stored progress report, `data` = `{id, progress, progress_message, progress_at, "
            "updated_at}` (the task's fields of those names); the stream ends after a final state."
        ),
    )
    async def events(
        self,
        task_id: TaskId,
        request: AnyRequest,
        tasks: Tasks,
        last_event_id: Annotated[
            int | None,
            HeaderParameter(
                name="Last-Event-ID",
                ge=0,
                le=MAX_TASK_ID,
                schema_extra={"minimum": 0, "maximum": MAX_TASK_ID},
                description="The last event's id (a version): resume after it.",
            ),
        ] = None,
    ) -> Response[Any]:
        """Resumable with ``Last-Event-ID``: only states newer than it are sent.
        A comment is sent as a keep-alive while nothing changes."""
        after = last_event_id or 0
        caller, watcher = authorized(request, READ), tasks.watcher
        changes = watcher.changes(
            task_id,
            owner=caller.owner_filter,
            timeout_s=watcher.max_stream_s,
            after_version=after,
            every_read=True,
        )
        first = await anext(changes)  # TaskNotFound here is a 404, before the stream starts
        if first.is_final and first.version <= after:
            await changes.aclose()
            return Response(None, status_code=204)  # tells EventSource not to reconnect
        return ServerSentEvent(_task_events(first, changes, after), retry_duration=RECONNECT_MS)

    @get(
        "/",
        operation_id="listTasks",
        summary="List tasks, newest first",
        responses=problems(400, *AUTH, 422, 503),
    )
    async def list_tasks(
        self,
        request: AnyRequest,
        tasks: Tasks,
        status: Annotated[TaskStatus | None, Parameter(description="Only tasks in this status.")] = None,
        task_type: Annotated[
            str | None,
            QueryParameter(name="type", min_length=1, max_length=200, description="Only this type."),
        ] = None,
        queue: Annotated[
            str | None, QueryParameter(min_length=1, max_length=63, description="Only tasks of this queue.")
        ] = None,
        tags: Annotated[
            list[str] | None,
            QueryParameter(
                name="tag",
                max_items=MAX_TAGS,
                description="Only tasks with this tag; repeat it for tasks with all of them.",
            ),
        ] = None,
        owner: Annotated[
            str | None,
            QueryParameter(
                min_length=1,
                max_length=200,
                description="Only this owner's tasks; needs `tasks:admin` unless it is the caller's `sub`.",
            ),
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=500, description="Page size.")] = 50,
        cursor: Annotated[
            str | None, Parameter(max_length=200, description="`next_cursor` of the previous page.")
        ] = None,
    ) -> TaskPage:
        """Keyset pages on (created_at, id): stable while tasks are added.
        ``next_cursor`` is null on the last page. FAILED tasks can be run again
        with ``POST /tasks/{id}/retry``."""
        caller = authorized(request, READ)
        query = TaskQuery(
            owner=asked_owner(caller, owner),
            status=status,
            type=task_type,
            queue=queue,
            tags=check_tags(tags or ()),
            limit=limit + 1,  # one more tells whether another page exists
            before=decode_cursor(cursor) if cursor else None,
        )
        found = await tasks.listing.find(query)
        page, more = found[:limit], len(found) > limit
        return TaskPage(
            items=[TaskView.of(t) for t in page], next_cursor=encode_cursor(page[-1]) if more else None
        )

    @post(
        "/{task_id:int}/cancel",
        status_code=200,
        operation_id="cancelTask",
        summary="Cancel a task",
        responses=problems(400, *AUTH, 404, 409, 422, 503),
    )
    async def cancel(self, task_id: TaskId, request: AnyRequest, tasks: Tasks) -> TaskView:
        """PENDING: cancelled at once. PROCESSING: the worker stops the handler at
        its next heartbeat and discards any result. Finished: 409."""
        caller = authorized(request, WRITE)
        return TaskView.of(await tasks.service.cancel(task_id, owner=caller.owner_filter))

    @post(
        "/{task_id:int}/retry",
        status_code=200,
        operation_id="retryTask",
        summary="Re-queue a FAILED or CANCELLED task",
        responses=problems(400, *AUTH, 404, 409, 422, 503),
    )
    async def retry(self, task_id: TaskId, request: AnyRequest, tasks: Tasks) -> TaskView:
        """Runs it again with a fresh set of attempts; 409 in any other status."""
        caller = authorized(request, WRITE)
        return TaskView.of(await tasks.service.retry(task_id, owner=caller.owner_filter))
