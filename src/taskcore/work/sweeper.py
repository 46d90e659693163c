"""Finding work that fell through the cracks, and dispatching it again.

Runs inside every worker. Two kinds of rows need it: PROCESSING tasks whose
lease lapsed (their worker was killed or cut off) go back to PENDING, or to
FAILED once their attempts are spent; PENDING tasks whose message was never
confirmed (broker down at submit, API killed after the commit) are published
again. It also forgets idempotency keys past their time, so that table
stays the size of a day of keyed submits, and deletes finished tasks past
their retention (``work/retention.py``), so the task table stays the size of
that many days of work. Several sweepers at once are safe: each release is a
compare-and-set on the row's version, a duplicate message is dropped at the
claim, and deletions skip the rows another sweeper holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from taskcore.config import CoreConfig
from taskcore.errors import ServiceUnavailable
from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.model.status import TaskStatus
from taskcore.ports import Clock, Dependencies, QueueDepths, RecoveryStore, RecoveryTelemetry, WakeUpCensus
from taskcore.ports.telemetry import Recovery
from taskcore.telemetry import NoTelemetry
from taskcore.transitions.writer import Transitions
from taskcore.work.presence import REPORT_INTERVAL_S
from taskcore.work.retention import Retention

log = logging.getLogger("taskcore.sweeper")

BATCH = 500
# Reports older than this are from workers that are gone (their messages went back to the queue).
HELD_REPORTS_S = 3 * REPORT_INTERVAL_S
KEY_BATCHES_PER_SWEEP = 20  # at most 10,000 expired keys deleted per sweep


@dataclass
class SweepReport:
    released: int = 0
    failed: int = 0
    redispatched: int = 0
    woken: int = 0  # found by the wake-up census: confirmed once, but the broker no longer has them
    keys_forgotten: int = 0
    settled: int = 0  # blocked workflow steps whose parents' end went unsettled
    pruned: int = 0  # finished tasks past their retention, deleted

    def __bool__(self) -> bool:
        return bool(
            self.released
            or self.failed
            or self.redispatched
            or self.woken
            or self.keys_forgotten
            or self.settled
            or self.pruned
        )


class Sweeper:
    def __init__(
        self,
        *,
        recovery: RecoveryStore,
        transitions: Transitions,
        clock: Clock,
        config: CoreConfig,
        telemetry: RecoveryTelemetry | None = None,
        census: WakeUpCensus | None = None,
        depths: QueueDepths | None = None,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        dependencies: Dependencies | None = None,
        retention: Retention | None = None,
    ) -> None:
        """``census`` and ``depths`` (the broker's ready counts of ``queues``,
        every named queue there is) together turn on the wake-up census;
        without them, a lost message waits for ``redispatch_overdue_s``.
        Without ``retention`` no finished task is ever deleted."""
        self._queues = list(queues)
        self._dependencies = dependencies  # blocked steps whose settling was missed
        self._retention = retention
        self._recovery = recovery
        self._census = census
        self._depths = depths
        self._transitions = transitions
        self._clock = clock
        self._config = config
        self._telemetry = telemetry or NoTelemetry()

    async def sweep_once(self) -> SweepReport:
        report = SweepReport()
        now = self._clock.now()
        for task in await self._recovery.lapsed(now, BATCH):
            released = task.release(now)  # charged only if it ran alone: see Task.release
            if not await self._transitions.record(released):
                continue  # its worker finished (or another sweeper won) meanwhile
            if released.suspect and not task.suspect:
                log.warning("task %s runs alone next: its worker died while running it among others", task.id)
            if released.status is TaskStatus.FAILED:
                report.failed += 1
                self._telemetry.task_settled(released.type, "failed", queue=released.queue)
                log.warning("task %s failed: attempts spent by workers that died", task.id)
                continue
            report.released += 1
        config = self._config
        for task in await self._recovery.undispatched(
            unconfirmed_before=now - timedelta(seconds=config.redispatch_grace_s),
            overdue_before=now - timedelta(seconds=config.redispatch_overdue_s),
            limit=BATCH,
        ):
            if await self._transitions.republish(task):
                report.redispatched += 1
        report.woken = await self._wake_lost(now)
        report.settled = await self._settle_stalled(now)
        await self._transitions.catch_up()
        report.keys_forgotten = await self._forget_expired_keys(now)
        report.pruned = await self._prune()
        recoveries: dict[Recovery, int] = {
            "released": report.released,
            "failed": report.failed,
            "redispatched": report.redispatched + report.woken,
        }
        for action, count in recoveries.items():
            if count:
                self._telemetry.tasks_recovered(action, count)
        if report.pruned:
            self._telemetry.tasks_pruned(report.pruned)
        if report:
            log.info(
                "sweep: %d released, %d failed, %d dispatched again, %d woken again (lost wake-ups),"
                " %d stalled workflow steps settled, %d expired idempotency keys forgotten,"
                " %d finished tasks pruned",
                report.released,
                report.failed,
                report.redispatched,
                report.woken,
                report.settled,
                report.keys_forgotten,
                report.pruned,
            )
        return report

    async def _wake_lost(self, now: datetime) -> int:
        """The wake-up census: publish again the tasks whose messages the broker
        lost, once the loss has lasted ``lost_wake_up_grace_s`` (a moment's
        difference is messages on their way). Read the broker before the
        database: a message consumed in between then counts on both sides, never
        on neither, so a healthy backlog shows no deficit."""
        if self._census is None or self._depths is None:
            return 0
        read_at = self._clock.now()
        try:
            ready = 0
            for queue in self._queues:
                ready += await self._depths.depth(queue)
        except ServiceUnavailable as exc:
            log.debug("wake-up census skipped: %s", exc)
            return 0
        config = self._config
        missing = await self._census.take_missing(
            ready=ready,
            now=now,
            settled_before=now - timedelta(seconds=config.redispatch_grace_s),
            held_since=now - timedelta(seconds=HELD_REPORTS_S),
            persisting=timedelta(seconds=config.lost_wake_up_grace_s),
            limit=BATCH,
            read_at=read_at,
            queues=self._queues,
        )
        woken = 0
        for task in missing:
            woken += await self._transitions.republish(task)
        if missing:
            log.warning("wake-up census: %d PENDING tasks had no message on the broker; woken again", woken)
        return woken

    async def _settle_stalled(self, now: datetime) -> int:
        """Blocked steps whose parents have ended but were not settled (their
        worker died between the end and the settling): settle them now."""
        if self._dependencies is None:
            return 0
        settled = 0
        for task in await self._dependencies.stalled(BATCH):
            settled += await self._transitions.settle(task, now) is not None
        return settled

    async def _forget_expired_keys(self, now: datetime) -> int:
        """On its own: a database that fails here must not cost the sweep its
        report of what it recovered."""
        expired_before = now - timedelta(seconds=self._config.idempotency_ttl_s)
        forgotten = 0
        try:
            for _ in range(KEY_BATCHES_PER_SWEEP):
                batch = await self._recovery.forget_idempotency_keys(expired_before, BATCH)
                forgotten += batch
                if batch < BATCH:
                    break
        except ServiceUnavailable as exc:
            log.warning("expired idempotency keys not deleted this time: %s", exc)
        return forgotten

    async def _prune(self) -> int:
        """Last, and on its own like the keys: it is housekeeping, so a
        database that fails here costs neither the recoveries above nor the
        report. After the keys, so a task whose key was just forgotten can go
        in the same sweep."""
        if self._retention is None:
            return 0
        pruned = 0
        try:
            async for batch in self._retention.sweep():
                pruned += batch
        except ServiceUnavailable as exc:
            log.warning("finished tasks past their retention not deleted this time: %s", exc)
        return pruned

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every ``sweep_interval_s`` (with jitter, so many workers spread
        out) until ``stop`` is set."""
        interval = self._config.sweep_interval_s
        while not stop.is_set():
            try:
                await self.sweep_once()
            except ServiceUnavailable as exc:
                log.warning("sweep skipped: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval * (0.8 + 0.4 * random.random()))
