"""Firing the due schedules, in every worker.

Each worker's scheduler declares the code's schedules as it starts, then
sleeps until the soonest next fire time (at most ``max_sleep_s``, so a
schedule created over HTTP or fired by another worker is seen soon) and
fires what is due. Workers do not coordinate: each fire goes through
``ScheduleFirings.fire``, where the firing's uniqueness on (schedule, fire
time) and a row lock that the others skip make one task per fire time,
however many schedulers try. A worker that dies mid-fire leaves its
transaction rolled back, and the next scheduler to look fires it.

A fired task goes the way of a submitted one: stored PENDING, its wake-up
published and its status cached after the commit (the sweeper publishes
it if this worker dies in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta

from taskcore.errors import ServiceUnavailable, TaskcoreError
from taskcore.model.schedules import Schedule, ScheduleSpec
from taskcore.model.task import DEFAULT_PRIORITY, NewTask
from taskcore.ports import Clock, SubmitTelemetry
from taskcore.ports.schedules import ScheduleFirings
from taskcore.schedules.admin import ScheduleAdmin
from taskcore.schedules.timing import Timing
from taskcore.submit.service import TaskService
from taskcore.telemetry import NoTelemetry
from taskcore.transitions.writer import Transitions

log = logging.getLogger("taskcore.schedules")

BATCH = 100
MAX_SLEEP_S = 5.0
MIN_SLEEP_S = 0.05  # a due schedule another worker holds is looked at again after this, not at once
DEFAULT_GRACE_S = 60.0


class Scheduler:
    def __init__(
        self,
        *,
        firings: ScheduleFirings,
        admin: ScheduleAdmin,
        timing: Timing,
        tasks: TaskService,
        transitions: Transitions,
        clock: Clock,
        declared: Sequence[ScheduleSpec] = (),
        types: Sequence[str] | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        max_sleep_s: float = MAX_SLEEP_S,
        batch: int = BATCH,
        telemetry: SubmitTelemetry | None = None,
    ) -> None:
        """``declared``: the code's schedules (``HandlerRegistry.schedules()``),
        stored as the scheduler starts. ``types``: the task types this
        worker's registry has; it fires only their schedules, leaving the
        others to workers that can make their tasks (a rolling deploy that
        adds a handler and its schedule: the old workers leave it alone).
        ``grace_s``: how late a firing may be
        and still fire whatever its ``catch_up`` (``model/schedules.py``)."""
        self._firings = firings
        self._admin = admin
        self._timing = timing
        self._tasks = tasks
        self._transitions = transitions
        self._clock = clock
        self._declared = list(declared)
        self._types = None if types is None else sorted(types)
        self._grace = timedelta(seconds=grace_s)
        self._max_sleep_s = max_sleep_s
        self._batch = batch
        self._telemetry = telemetry or NoTelemetry()

    async def run(self, stop: asyncio.Event) -> None:
        """Declare the code's schedules (until it works), then fire until ``stop`` is set."""
        declared = False
        while not stop.is_set():
            try:
                if not declared:
                    await self.declare()
                    declared = True
                await self.fire_due()
                delay = await self._sleep_s()
            except ServiceUnavailable as exc:
                log.warning("schedules wait: %s", exc)
                delay = self._max_sleep_s
            except Exception:  # a bug must not end the scheduling for good
                log.exception("firing schedules failed")
                delay = self._max_sleep_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def declare(self) -> None:
        """Store the code's schedules, retiring those it no longer declares."""
        await self._admin.declare(self._declared)

    async def _sleep_s(self) -> float:
        """Until the soonest next fire time, within bounds."""
        soonest = await self._firings.next_due(self._types)
        if soonest is None:
            return self._max_sleep_s
        wait = (soonest - self._clock.now()).total_seconds()
        return min(max(wait, MIN_SLEEP_S), self._max_sleep_s)

    async def fire_due(self) -> int:
        """Fire the due schedules, a batch of them (the run loop comes back
        for more within ``MIN_SLEEP_S``); how many tasks this made."""
        now = self._clock.now()
        made = 0
        for schedule in await self._firings.due(now, self._batch, self._types):
            made += await self._fire(schedule)
        return made

    async def _fire(self, schedule: Schedule) -> int:
        now = self._clock.now()
        plan = self._timing.plan(schedule, now, self._grace)
        try:
            firings = [(at, self._task(schedule)) for at in plan.fire_at]
            added = await self._firings.fire(schedule, firings, next_fire_at=plan.next_fire_at, now=now)
        except ServiceUnavailable:
            raise
        except TaskcoreError as exc:
            # Its task cannot be made (its handler changed since the schedule
            # was stored) or stored: skip this firing, say why, go on.
            log.error("schedule %r made no task at %s: %s", schedule.name, plan.fire_at[-1:], exc)
            error = f"its task cannot be made: {exc}"
            await self._firings.fire(schedule, [], next_fire_at=plan.next_fire_at, now=now, error=error)
            return 0
        if len(added) > 1:
            log.info("schedule %r caught up %d firings", schedule.name, len(added))
        made = 0
        for one in added:
            if one.created:
                made += 1
                self._telemetry.task_submitted(one.task.type, queue=one.task.queue)
                await self._transitions.created(one.task)
        return made

    def _task(self, schedule: Schedule) -> NewTask:
        return self._tasks.new_task(
            schedule.type,
            schedule.input,
            owner=schedule.owner,
            priority=DEFAULT_PRIORITY if schedule.priority is None else schedule.priority,
            queue=schedule.queue,
        )
