"""``/queues``: each named queue, and pausing and resuming one (``tasks:admin``)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import Parameter

from taskcore.entrypoints.http.auth import ADMIN, authorized
from taskcore.entrypoints.http.tasks_controller import AUTH, problems
from taskcore.model.queues import QueueView
from taskcore.queues.admin import QueueAdmin

Queues = NamedDependency[QueueAdmin]
QueueName = Annotated[str, Parameter(min_length=1, max_length=63, description="The queue's name.")]


class QueueState(msgspec.Struct, kw_only=True):
    name: str
    paused: bool
    ready: int | None  # wake-ups waiting at the broker; null if the broker did not answer
    dead_letters: int | None
    running: int
    waiting: int  # PENDING and due
    scheduled: int  # PENDING, due later

    @classmethod
    def of(cls, view: QueueView) -> QueueState:
        return cls(**msgspec.structs.asdict(view))


class QueueList(msgspec.Struct, kw_only=True):
    items: list[QueueState]


class QueueController(Controller):
    path = "/queues"
    tags = ["queues"]

    @get(
        "/",
        operation_id="listQueues",
        summary="List the queues",
        responses=problems(400, *AUTH, 503),
    )
    async def list_queues(self, request: Request[Any, Any, Any], queues: Queues) -> QueueList:
        """Every queue of the handler registry: whether it is paused, wake-ups
        ready at the broker, dead letters, and its tasks running, waiting
        (due) and scheduled (due later)."""
        authorized(request, ADMIN)
        return QueueList(items=[QueueState.of(view) for view in await queues.overview()])

    @post(
        "/{name:str}/pause",
        status_code=200,
        operation_id="pauseQueue",
        summary="Pause a queue",
        responses=problems(400, *AUTH, 404, 422, 503),
    )
    async def pause(self, name: QueueName, request: Request[Any, Any, Any], queues: Queues) -> QueueState:
        """Durable, and safe to repeat: submits are still accepted, running
        tasks finish, and no task of the queue starts on any worker until it
        is resumed; its wake-ups wait at the broker."""
        authorized(request, ADMIN)
        return QueueState.of(await queues.pause(name))

    @post(
        "/{name:str}/resume",
        status_code=200,
        operation_id="resumeQueue",
        summary="Resume a paused queue",
        responses=problems(400, *AUTH, 404, 422, 503),
    )
    async def resume(self, name: QueueName, request: Request[Any, Any, Any], queues: Queues) -> QueueState:
        """The backlog runs again, in priority order, on the workers that consume the queue."""
        authorized(request, ADMIN)
        return QueueState.of(await queues.resume(name))
