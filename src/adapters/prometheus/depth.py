"""Reading the queue depths into gauges every few seconds, not on each scrape.

A scrape then costs no broker round trip, and many scrapers (or a scrape
storm) add no load on the broker. A reading that fails leaves the gauges at
NaN (unknown) rather than at a stale number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from taskcore.adapters.prometheus.metrics import PrometheusTelemetry
from taskcore.errors import ServiceUnavailable
from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.ports import QueueDepths

log = logging.getLogger("taskcore.metrics")

INTERVAL_S = 5.0


class QueueDepthPoller:
    def __init__(
        self,
        queue: QueueDepths,
        telemetry: PrometheusTelemetry,
        interval_s: float = INTERVAL_S,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> None:
        self._queue = queue
        self._queues = list(queues)
        self._telemetry = telemetry
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        for queue in self._queues:
            try:
                ready, dead = await self._queue.depth(queue), await self._queue.dead_letter_depth(queue)
            except ServiceUnavailable as exc:
                log.debug("depths of queue %r unknown: %s", queue, exc)
                self._unknown()
                return
            self._telemetry.queue_depths(queue, ready, dead)

    def _unknown(self) -> None:
        for queue in self._queues:
            self._telemetry.queue_depths(queue, None, None)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug here must not end the readings for good
                log.exception("reading the queue depths failed")
                self._unknown()
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="taskcore-queue-depths")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
