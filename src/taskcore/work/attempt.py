"""A running attempt's hold on its task: the version it last wrote, its lease, its progress.

While a handler runs, its attempt writes to the task in two ways: the
heartbeat renews the lease, and progress reports are stored as transitions
(version + 1, so they are cached and announced like any other). Both are
fenced by the version the attempt last wrote, so they take turns (one lock),
and the attempt keeps the row as it left it (``current``): the next renewal,
the next report and the verdict start from it. A renewal does not change the
version but does change the lease, which ``current`` follows too, or the next
report would write the old lease back.

A fenced write that finds the row moved on means the task is no longer this
attempt's (cancelled, or released by a sweeper and perhaps claimed again):
``lost`` is done and nothing more is written, progress included. Before
giving up, the row is read once: a write whose commit was not confirmed (the
connection broke at the wrong moment) may have landed, and a row still in
this attempt (PROCESSING, same start, same attempt count, a version at least
ours) can only have been moved on by this attempt, so it is taken as ours.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from taskcore.config import CoreConfig
from taskcore.errors import ServiceUnavailable
from taskcore.model.progress import Progress
from taskcore.model.task import Task
from taskcore.ports import AttemptStore, Clock
from taskcore.transitions.writer import Transitions
from taskcore.work.progress import ProgressReporter

log = logging.getLogger("taskcore.processor")


class Attempt:
    """Made on the event loop when the claim succeeds; ``finish`` before the verdict."""

    def __init__(
        self,
        claimed: Task,
        *,
        attempts: AttemptStore,
        transitions: Transitions,
        clock: Clock,
        config: CoreConfig,
    ) -> None:
        self._current = claimed
        self._attempts = attempts
        self._transitions = transitions
        self._clock = clock
        self._lease = config.lease
        self._writing = asyncio.Lock()
        # Done once the task is no longer this attempt's: a future, not an
        # event, so the heartbeat can wait on it beside the handler with no
        # task of its own per attempt.
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.progress = ProgressReporter(self._store_progress, interval_s=config.progress_interval_s)

    @property
    def current(self) -> Task:
        """The task as this attempt last wrote it: what its verdict is computed from."""
        return self._current

    def report(self, progress: Progress) -> None:
        """A handler's report (``TaskContext.progress``), from any thread; returns at once."""
        self.progress.report(progress)

    async def renew(self) -> bool:
        """Extend the lease; ``False`` once the task is no longer this attempt's."""
        async with self._writing:
            if self.lost.done():
                return False
            lease_until = self._clock.now() + self._lease
            for _ in range(2):  # a second time only after taking over an unconfirmed write
                current = self._current
                try:
                    renewed = await self._attempts.renew_lease(current.id, current.version, lease_until)
                except ServiceUnavailable as exc:
                    # Keep running: the database may be back before the lease ends, and
                    # if it is not, the fenced verdict write protects the newer attempt.
                    log.warning("could not renew the lease of task %s: %s", current.id, exc)
                    return True
                if renewed:
                    self._current = msgspec.structs.replace(current, lease_until=lease_until)
                    return True
                if not await self._still_ours():
                    return False
            return not self.lost.done()

    async def _store_progress(self, progress: Progress) -> bool:
        async with self._writing:
            if self.lost.done():
                return True  # not ours any more: nothing to write, nothing to try again
            for _ in range(2):
                changed = self._current.report_progress(progress, self._clock.now())
                try:
                    saved = await self._transitions.record(changed)
                except ServiceUnavailable as exc:
                    log.warning("progress of task %s not stored: %s", changed.id, exc)
                    return False
                if saved:
                    self._current = changed
                    return True
                if not await self._still_ours():
                    return True
            return self.lost.done()  # refused twice, holder unknown: try again later

    async def _still_ours(self) -> bool:
        """After a fenced write was refused: take the row over if it is still
        this attempt's (see the module's docstring), else mark the attempt
        lost. If the row cannot be read, neither: the handler keeps running
        until the next heartbeat asks again (the verdict is fenced anyway)."""
        ours = self._current
        try:
            row = await self._attempts.get(ours.id, fresh=True)
        except ServiceUnavailable as exc:
            log.warning("task %s: could not check that it is still this attempt's: %s", ours.id, exc)
            return True
        if row is not None and row.same_attempt(ours) and row.version >= ours.version:
            self._current = row
            return True
        if not self.lost.done():
            self.lost.set_result(None)
        return False

    async def finish(self) -> Progress | None:
        """No more progress writes (one under way ends first); the latest
        report not written yet, which goes with the verdict."""
        return await self.progress.close()
