"""``/schedules``: periodic schedules, by cron expression or interval.

A schedule created here belongs to the caller and its tasks are the
caller's; the ones declared in code (``system``) are listed to everyone and
changed by admins only. Listing shows the caller's and the system ones; an
admin (and every caller with auth off) sees them all.
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
from taskcore.model.schedules import (
    MAX_CATCH_UP_LIMIT,
    MAX_CRON_LENGTH,
    MAX_EVERY_S,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    CatchUp,
    Schedule,
)
from taskcore.model.task import MAX_PRIORITY, MIN_PRIORITY
from taskcore.schedules.admin import ScheduleAdmin

Schedules = NamedDependency[ScheduleAdmin]
Mode = Literal["skip", "latest", "all"]
assert set(Mode.__args__) == {mode.value for mode in CatchUp}  # type: ignore[attr-defined]
Name = Annotated[
    str,
    Parameter(
        min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN, description="The schedule's name."
    ),
]


class CreateSchedule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="The task type it submits.")]
    input_data: Annotated[Any, msgspec.Meta(description="The input of each task it submits.")] = None
    cron: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=MAX_CRON_LENGTH,
                description="Five fields (minute hour day month weekday), or six with seconds first.",
            ),
        ]
        | None
    ) = None
    timezone: (
        Annotated[
            str, msgspec.Meta(max_length=64, description="The IANA zone cron is read in; UTC by default.")
        ]
        | None
    ) = None
    every_s: (
        Annotated[int, msgspec.Meta(ge=1, le=MAX_EVERY_S, description="An interval instead of cron.")] | None
    ) = None
    queue: Annotated[str, msgspec.Meta(max_length=63)] | None = None
    priority: Annotated[int, msgspec.Meta(ge=MIN_PRIORITY, le=MAX_PRIORITY)] | None = None
    catch_up: Mode | None = None
    catch_up_limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_CATCH_UP_LIMIT)] | None = None


class ScheduleView(msgspec.Struct, kw_only=True):
    name: str
    type: str
    cron: str | None
    timezone: str
    every_s: int | None
    queue: str | None  # null: the handler's
    priority: int | None  # null: the default
    catch_up: Mode
    catch_up_limit: int
    owner: str | None
    system: bool  # declared in code
    paused: bool
    retired_at: datetime | None  # declared in code once, no longer: it does not fire
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    error: str | None  # why its last firing made no task
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleView:
        fields = msgspec.structs.asdict(schedule)
        del fields["input"]
        fields["catch_up"] = schedule.catch_up.value
        return cls(**fields)


class ScheduleList(msgspec.Struct, kw_only=True):
    items: list[ScheduleView]  # by name


class ScheduleController(Controller):
    path = "/schedules"
    tags = ["schedules"]

    @route("/", http_method=HttpMethod.OPTIONS, include_in_schema=False, status_code=204)
    async def allow(self) -> Response[None]:
        """Litestar 2's automatic OPTIONS answer lists only the first method of a
        path (litestar#4169); this one lists them all."""
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @route("/{name:str}", http_method=HttpMethod.OPTIONS, include_in_schema=False, status_code=204)
    async def allow_one(self, name: Annotated[str, Parameter()]) -> Response[None]:
        """As ``allow``, for one schedule's path (GET and DELETE)."""
        return Response(None, status_code=204, headers={"Allow": "DELETE, GET, OPTIONS"})

    @post(
        "/",
        status_code=201,
        operation_id="createSchedule",
        summary="Create a schedule",
        responses=problems(400, *AUTH, 409, 413, 422, 503),
    )
    async def create(
        self, data: JSONBody[CreateSchedule], request: Request[Any, Any, Any], schedules: Schedules
    ) -> Response[ScheduleView]:
        """From its first fire time after now, each fire time submits one task
        of ``type`` with ``input_data``, as the caller, however many workers
        run. Exactly one of ``cron`` and ``every_s``; ``catch_up`` says what
        becomes of fire times missed while no worker ran (``skip``, ``latest``,
        ``all`` up to ``catch_up_limit``). 409 if the name is taken."""
        caller = authorized(request, WRITE)
        made = await schedules.create(
            data.name,
            data.type,
            data.input_data,
            owner=caller.sub,
            cron=data.cron,
            timezone=data.timezone or "UTC",
            every_s=data.every_s,
            queue=data.queue,
            priority=data.priority,
            catch_up=CatchUp(data.catch_up or CatchUp.SKIP),
            catch_up_limit=data.catch_up_limit,
        )
        return Response(
            ScheduleView.of(made), status_code=201, headers={"Location": f"/schedules/{made.name}"}
        )

    @get("/", operation_id="listSchedules", summary="List schedules", responses=problems(400, *AUTH, 503))
    async def list_schedules(self, request: Request[Any, Any, Any], schedules: Schedules) -> ScheduleList:
        """The caller's and the system ones, by name, with their next and last fire times."""
        caller = authorized(request, READ)
        return ScheduleList(
            items=[ScheduleView.of(s) for s in await schedules.schedules(caller.owner_filter)]
        )

    @get(
        "/{name:str}",
        operation_id="getSchedule",
        summary="Read a schedule",
        responses=problems(400, *AUTH, 404, 422, 503),
    )
    async def get_schedule(
        self, name: Name, request: Request[Any, Any, Any], schedules: Schedules
    ) -> ScheduleView:
        caller = authorized(request, READ)
        return ScheduleView.of(await schedules.get(name, caller.owner_filter))

    @delete(
        "/{name:str}",
        status_code=204,
        operation_id="deleteSchedule",
        summary="Delete a schedule",
        responses=problems(400, *AUTH, 404, 409, 422, 503),
    )
    async def remove(self, name: Name, request: Request[Any, Any, Any], schedules: Schedules) -> None:
        """It submits no more tasks; those it submitted stay. One declared in
        code is a 409 until the code no longer declares it (it is retired then)."""
        caller = authorized(request, WRITE)
        await schedules.remove(name, caller.owner_filter)

    @post(
        "/{name:str}/pause",
        status_code=200,
        operation_id="pauseSchedule",
        summary="Pause a schedule",
        responses=problems(400, *AUTH, 404, 422, 503),
    )
    async def pause(self, name: Name, request: Request[Any, Any, Any], schedules: Schedules) -> ScheduleView:
        """Durable, and safe to repeat: it submits nothing until it is resumed."""
        caller = authorized(request, WRITE)
        return ScheduleView.of(await schedules.pause(name, caller.owner_filter))

    @post(
        "/{name:str}/resume",
        status_code=200,
        operation_id="resumeSchedule",
        summary="Resume a paused schedule",
        responses=problems(400, *AUTH, 404, 422, 503),
    )
    async def resume(self, name: Name, request: Request[Any, Any, Any], schedules: Schedules) -> ScheduleView:
        """It fires again from its next fire time after now; the fire times it
        spent paused are not caught up."""
        caller = authorized(request, WRITE)
        return ScheduleView.of(await schedules.resume(name, caller.owner_filter))
