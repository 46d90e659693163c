"""Workers telling the roster they are alive, for the dashboard's worker list.

Each worker upserts one row about itself (``WorkerReport``) every few seconds
while it runs, draining included; nothing is removed when it stops, so a
reader lists the workers *seen* recently (``WorkerRoster.workers_seen``).
A report that cannot be stored is skipped: presence is for people to look
at, never a reason for a worker to stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime

from taskcore.errors import ServiceUnavailable
from taskcore.model.workers import WorkerReport
from taskcore.ports import Clock, WorkerRoster

log = logging.getLogger("taskcore.presence")

REPORT_INTERVAL_S = 5.0


def worker_id() -> str:
    """This process as ``host-pid``: what an operator looks for in ``ps`` or a container list."""
    return f"{socket.gethostname()}-{os.getpid()}"


Tally = Callable[[], tuple[int, int, int]]
"""Reads ``(in_flight, processed, held)`` off the running worker."""


class WorkerPresence:
    def __init__(
        self,
        *,
        roster: WorkerRoster,
        clock: Clock,
        worker: str | None = None,
        interval_s: float = REPORT_INTERVAL_S,
    ) -> None:
        self._roster = roster
        self._clock = clock
        self.worker = worker or worker_id()
        self._interval_s = interval_s
        self._started_at: datetime | None = None

    async def report(self, in_flight: int, processed: int, held: int = 0) -> None:
        """Store one report now; ``ServiceUnavailable`` if the repository is down."""
        now = self._clock.now()
        if self._started_at is None:
            self._started_at = now
        report = WorkerReport(
            id=self.worker,
            started_at=self._started_at,
            seen_at=now,
            in_flight=in_flight,
            processed=processed,
            held=held,
        )
        await self._roster.report_worker(report)

    async def run(self, tally: Tally) -> None:
        """Report at once, then every ``interval_s`` until cancelled."""
        while True:
            try:
                await self.report(*tally())
            except ServiceUnavailable as exc:
                log.debug("worker report skipped: %s", exc)
            except Exception:  # a bug here must not stop the reports for good
                log.exception("storing the worker report failed")
            await asyncio.sleep(self._interval_s)
