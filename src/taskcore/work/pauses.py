"""A worker's view of the paused queues, and its consumer kept off them.

The claim refuses a task of a paused queue (the database decides), so
nothing new starts once a pause is stored. This keeps the worker from
spinning on the wake-ups it may not run: it looks every ``interval_s`` and
stops receiving from a paused queue, and a claim refused for a pause makes
it look at once. Resuming works the same way round, within ``interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from taskcore.errors import ServiceUnavailable
from taskcore.ports import Consumer, QueueSwitches

log = logging.getLogger("taskcore.worker")

INTERVAL_S = 1.0


class PauseWatcher:
    def __init__(
        self, switches: QueueSwitches, queues: Sequence[str], *, interval_s: float = INTERVAL_S
    ) -> None:
        """``queues``: the ones the worker consumes."""
        self._switches = switches
        self._queues = list(queues)
        self._interval_s = interval_s
        self._paused: frozenset[str] = frozenset()
        self._consumer: Consumer | None = None

    async def watch(self, consumer: Consumer) -> None:
        """Keep ``consumer`` off the paused queues until cancelled."""
        self._consumer = consumer
        try:
            while True:
                try:
                    await self.refresh()
                except ServiceUnavailable as exc:
                    log.debug("paused queues not read (the last reading stands): %s", exc)
                await asyncio.sleep(self._interval_s)
        finally:
            self._consumer = None

    async def refresh(self) -> frozenset[str]:
        """Read the paused queues now; a change moves the consumer on or off them."""
        paused = await self._switches.paused()
        if paused != self._paused:
            before, self._paused = self._paused, paused
            for queue in sorted((paused - before) & set(self._queues)):
                log.info("queue %r is paused: taking none of its tasks", queue)
            for queue in sorted((before - paused) & set(self._queues)):
                log.info("queue %r is resumed", queue)
            if self._consumer is not None:
                await self._consumer.consume_only([q for q in self._queues if q not in paused])
        return paused

    async def is_paused(self, queue: str) -> bool:
        """For a due task whose claim was refused: whether its queue is paused,
        asked of the database now (and the consumer moved off it if so)."""
        return queue in await self.refresh()
