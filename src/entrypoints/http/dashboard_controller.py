"""``/dashboard`` (a page) and ``/stats`` (its data).

The page and its two assets are public and carry no data: every number comes
from ``GET /stats``, which takes the same bearer token as the task routes and
shows a caller the stats of its own tasks, or of every task (with the queue
depths and the workers) for ``tasks:admin``, and for ``tasks:admin`` from
``GET /queues`` too (its Queues panel; ``queues_controller``). Its task
browser (``tasks.js``) reads ``GET /tasks``, ``GET /tasks/{id}/detail`` and
``GET /workflows/{id}``, and cancels and re-queues through the task routes,
with the same token. Nothing is
loaded from another origin, and the Content-Security-Policy says so.
"""

from __future__ import annotations

import functools
from datetime import datetime
from importlib.resources import files
from typing import Annotated

import msgspec
from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency

from taskcore.dashboard.stats import StatsService
from taskcore.entrypoints.http.auth import READ, authorized
from taskcore.entrypoints.http.tasks_controller import AUTH, AnyRequest, problems
from taskcore.model.stats import MinuteStats, Stats
from taskcore.model.task import Task
from taskcore.model.workers import WorkerReport

Service = NamedDependency[StatsService]

_ASSETS = {"dashboard.js": "text/javascript", "tasks.js": "text/javascript", "dashboard.css": "text/css"}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}


@functools.cache
def _asset(name: str) -> bytes:
    return files("taskcore.entrypoints.http").joinpath("dashboard", name).read_bytes()


class StatusCounts(msgspec.Struct, kw_only=True, rename="upper"):
    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int


class MinuteView(msgspec.Struct, kw_only=True):
    minute: Annotated[datetime, msgspec.Meta(description="The minute's start (UTC).")]
    completed: int
    failed: int
    wait_p50_s: Annotated[float | None, msgspec.Meta(description="Queue wait: from due to claimed.")]
    wait_p95_s: float | None
    run_p50_s: Annotated[float | None, msgspec.Meta(description="Run time: from claimed to finished.")]
    run_p95_s: float | None

    @classmethod
    def of(cls, minute: MinuteStats) -> MinuteView:
        return cls(**msgspec.structs.asdict(minute))


class QueueView(msgspec.Struct, kw_only=True):
    ready: Annotated[
        int | None, msgspec.Meta(description="Messages waiting; null when the broker did not answer.")
    ]
    dead_letters: int | None


class WorkerView(msgspec.Struct, kw_only=True):
    id: Annotated[str, msgspec.Meta(description="host-pid")]
    started_at: datetime
    seen_at: datetime
    in_flight: int
    processed: Annotated[int, msgspec.Meta(description="Attempts run to a verdict since it started.")]
    held: Annotated[
        int, msgspec.Meta(description="Messages it holds from the broker, waiting in its buffer or running.")
    ] = 0

    @classmethod
    def of(cls, worker: WorkerReport) -> WorkerView:
        return cls(**msgspec.structs.asdict(worker))


class FailureView(msgspec.Struct, kw_only=True):
    id: int
    type: str
    error: str | None
    attempts: int
    max_attempts: int
    finished_at: datetime | None
    tags: list[str]

    @classmethod
    def of(cls, task: Task) -> FailureView:
        return cls(
            id=task.id,
            type=task.type,
            error=task.error,
            attempts=task.attempts,
            max_attempts=task.max_attempts,
            finished_at=task.finished_at,
            tags=list(task.tags),
        )


class StatsView(msgspec.Struct, kw_only=True):
    at: datetime
    owner: Annotated[str | None, msgspec.Meta(description="Whose tasks are counted; null: everyone's.")]
    counts: StatusCounts
    minutes: Annotated[list[MinuteView], msgspec.Meta(description="One per minute, oldest first.")]
    failures: Annotated[list[FailureView], msgspec.Meta(description="The latest FAILED tasks, newest first.")]
    queue: Annotated[QueueView | None, msgspec.Meta(description="Null unless the caller sees every task.")]
    workers: Annotated[
        list[WorkerView] | None,
        msgspec.Meta(
            description="Workers seen in the last `workers_seen_s`; null unless the caller sees every task."
        ),
    ]
    workers_seen_s: float

    @classmethod
    def of(cls, stats: Stats, owner: str | None) -> StatsView:
        counts = {status.value.lower(): n for status, n in stats.counts.items()}
        return cls(
            at=stats.at,
            owner=owner,
            counts=StatusCounts(**counts),
            minutes=[MinuteView.of(m) for m in stats.minutes],
            failures=[FailureView.of(t) for t in stats.failures],
            queue=None if stats.queue is None else QueueView(**msgspec.structs.asdict(stats.queue)),
            workers=None if stats.workers is None else [WorkerView.of(w) for w in stats.workers],
            workers_seen_s=stats.workers_seen_s,
        )


class StatsController(Controller):
    path = "/stats"
    tags = ["dashboard"]

    @get("/", operation_id="getStats", summary="Dashboard numbers", responses=problems(*AUTH, 503))
    async def stats(self, stats: Service, request: AnyRequest) -> StatsView:
        """Counts by status, finishes and latency per minute over the last 15
        minutes, and the latest failures, of the caller's own tasks; of every
        task with ``tasks:admin`` (or with auth off), plus the queue depths and
        the workers seen recently."""
        owner = authorized(request, READ).owner_filter
        return StatsView.of(await stats.snapshot(owner=owner), owner)


class DashboardController(Controller):
    path = "/dashboard"
    include_in_schema = False

    @get("/", media_type=MediaType.HTML, sync_to_thread=False)
    def page(self) -> Response[bytes]:
        return Response(_asset("index.html"), media_type=MediaType.HTML, headers=_HEADERS)

    @get("/dashboard.js", sync_to_thread=False)
    def script(self) -> Response[bytes]:
        return self._served("dashboard.js")

    @get("/tasks.js", sync_to_thread=False)
    def browser(self) -> Response[bytes]:
        """The task browser (its tables and task pages)."""
        return self._served("tasks.js")

    @get("/dashboard.css", sync_to_thread=False)
    def style(self) -> Response[bytes]:
        return self._served("dashboard.css")

    @staticmethod
    def _served(name: str) -> Response[bytes]:
        return Response(_asset(name), media_type=_ASSETS[name], headers=_HEADERS)
