"""Creating, reading, pausing and removing schedules, and declaring the code's.

A runtime schedule (``POST /schedules``) belongs to its creator, like a
task: its tasks are the owner's, and only the owner (or an admin) removes,
pauses or resumes it. A system schedule is declared in code
(``HandlerRegistry.periodic``) and stored by each worker as it starts; one the
code no longer declares is retired (kept, shown, not fired) and an admin may
remove it. Everyone may read the system schedules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from taskcore.errors import InvalidInput, UnknownTaskType
from taskcore.model.schedules import (
    DEFAULT_CATCH_UP_LIMIT,
    MAX_SCHEDULES,
    CatchUp,
    Schedule,
    ScheduleConflict,
    ScheduleNotFound,
    ScheduleReadOnly,
    ScheduleSpec,
    check_timing,
)
from taskcore.model.task import DEFAULT_PRIORITY
from taskcore.ports import Clock
from taskcore.ports.schedules import ScheduleStore, ScheduleSwitches
from taskcore.schedules.timing import Timing
from taskcore.submit.service import TaskService

log = logging.getLogger("taskcore.schedules")


class ScheduleAdmin:
    def __init__(
        self,
        *,
        store: ScheduleStore,
        switches: ScheduleSwitches,
        timing: Timing,
        tasks: TaskService,
        clock: Clock,
    ) -> None:
        """``tasks`` validates a schedule's task as a submit would (its type,
        input, queue and priority), before anything is stored."""
        self._store = store
        self._switches = switches
        self._timing = timing
        self._tasks = tasks
        self._clock = clock

    def checked(self, spec: ScheduleSpec) -> ScheduleSpec:
        """``spec`` with its input as it will be stored, or ``InvalidInput`` /
        ``UnknownTaskType`` for what a submit of its task would refuse."""
        self._timing.check(check_timing(spec))
        new = self._tasks.new_task(
            spec.type,
            spec.input,
            owner=spec.owner,
            priority=DEFAULT_PRIORITY if spec.priority is None else spec.priority,
            queue=spec.queue,
        )
        return msgspec.structs.replace(spec, input=new.input)

    async def create(
        self,
        name: str,
        task_type: str,
        input_data: Any,
        *,
        owner: str | None,
        cron: str | None = None,
        timezone: str = "UTC",
        every_s: int | None = None,
        queue: str | None = None,
        priority: int | None = None,
        catch_up: CatchUp = CatchUp.SKIP,
        catch_up_limit: int | None = None,
    ) -> Schedule:
        """A new runtime schedule of ``owner``'s, first due at its first fire
        time after now; ``ScheduleConflict`` if the name is taken."""
        spec = self.checked(
            ScheduleSpec(
                name=name,
                type=task_type,
                input=input_data,
                cron=cron,
                timezone=timezone,
                every_s=every_s,
                queue=queue,
                priority=priority,
                catch_up=catch_up,
                catch_up_limit=DEFAULT_CATCH_UP_LIMIT if catch_up_limit is None else catch_up_limit,
                owner=owner,
            )
        )
        mine = [one for one in await self._store.schedules(owner) if not one.system]
        if owner is not None and len(mine) >= MAX_SCHEDULES:
            raise InvalidInput(f"an owner has at most {MAX_SCHEDULES} schedules")
        now = self._clock.now()
        return await self._store.add_schedule(self._stored(spec, now))

    def _stored(self, spec: ScheduleSpec, now: datetime) -> Schedule:
        return Schedule(
            **msgspec.structs.asdict(spec),
            next_fire_at=self._timing.after(spec, now),
            created_at=now,
            updated_at=now,
        )

    async def schedules(self, owner: str | None) -> list[Schedule]:
        return await self._store.schedules(owner)

    async def get(self, name: str, owner: str | None) -> Schedule:
        found = await self._store.schedule(name)
        if found is None or not found.visible_to(owner):
            raise ScheduleNotFound(f"no schedule {name!r}", name=name)
        return found

    async def remove(self, name: str, owner: str | None) -> None:
        """A system schedule still declared in code cannot be removed (remove
        it from the code: the next worker to start retires it)."""
        found = await self._changeable(name, owner)
        if found.system and found.retired_at is None:
            raise ScheduleConflict(
                f"schedule {name!r} is declared in code; remove it there (it is retired then), or pause it",
                name=name,
            )
        if not await self._store.remove_schedule(name):
            raise ScheduleNotFound(f"no schedule {name!r}", name=name)

    async def pause(self, name: str, owner: str | None) -> Schedule:
        """Safe to repeat: it makes no task until it is resumed."""
        await self._changeable(name, owner)
        paused = await self._switches.pause_schedule(name, self._clock.now())
        if paused is None:
            raise ScheduleNotFound(f"no schedule {name!r}", name=name)
        return paused

    async def resume(self, name: str, owner: str | None) -> Schedule:
        """It fires again from its next fire time after now: what it would have
        fired while paused is not caught up."""
        found = await self._changeable(name, owner)
        now = self._clock.now()
        resumed = await self._switches.resume_schedule(name, self._timing.after(found, now), now)
        if resumed is None:
            raise ScheduleNotFound(f"no schedule {name!r}", name=name)
        return resumed

    async def _changeable(self, name: str, owner: str | None) -> Schedule:
        """The schedule, if ``owner`` may change it: its own, or any for an admin (``None``)."""
        found = await self.get(name, owner)
        if owner is not None and found.owner != owner:
            raise ScheduleReadOnly(
                f"schedule {name!r} is declared in code: an admin may change it", name=name
            )
        return found

    async def declare(self, specs: Sequence[ScheduleSpec]) -> None:
        """Store the code's schedules (system ones) and retire those it no longer
        declares. A schedule the store cannot take (a cron expression the
        calendar cannot read, a task its handler refuses) is logged and left out."""
        now = self._clock.now()
        runtime = {one.name for one in await self._store.schedules(None) if not one.system}
        declared = []
        for spec in specs:
            if spec.name in runtime:
                log.warning("schedule %r is declared in code, but a runtime schedule has its name", spec.name)
                continue
            try:
                checked = self.checked(msgspec.structs.replace(spec, owner=None, system=True))
            except (InvalidInput, UnknownTaskType) as exc:
                log.error("schedule %r is not declared: %s", spec.name, exc)
                continue
            declared.append(self._stored(checked, now))
        await self._store.declare(declared, now)
