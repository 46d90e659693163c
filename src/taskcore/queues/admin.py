"""Pausing and resuming queues, and the overview ``GET /queues`` shows.

Pausing is an incident tool: submits keep being accepted (the tasks wait),
running tasks finish, and nothing new starts anywhere until the queue is
resumed; the wake-ups stay at the broker meanwhile, so resuming runs the
backlog in the broker's (priority) order.
"""

from __future__ import annotations

import asyncio
import logging

from taskcore.errors import ServiceUnavailable
from taskcore.handlers.registry import HandlerRegistry
from taskcore.model.queues import QueueLoad, QueueView, UnknownQueue
from taskcore.ports import Clock, QueueDepths, QueueLoads, QueueSwitches

log = logging.getLogger("taskcore.queues")

DEPTH_TIMEOUT_S = 1.0


class QueueAdmin:
    def __init__(
        self,
        *,
        switches: QueueSwitches,
        loads: QueueLoads,
        registry: HandlerRegistry,
        clock: Clock,
        depths: QueueDepths | None = None,
    ) -> None:
        self._switches = switches
        self._loads = loads
        self._registry = registry
        self._clock = clock
        self._depths = depths

    def _known(self, queue: str) -> str:
        if queue not in self._registry.queues():
            raise UnknownQueue(f"no queue named {queue!r}", queue=queue)
        return queue

    async def pause(self, queue: str) -> QueueView:
        if await self._switches.pause(self._known(queue), self._clock.now()):
            log.warning("queue %r paused: no new task of it starts until it is resumed", queue)
        return await self.view(queue)

    async def resume(self, queue: str) -> QueueView:
        if await self._switches.resume(self._known(queue), self._clock.now()):
            log.warning("queue %r resumed", queue)
        return await self.view(queue)

    async def view(self, queue: str) -> QueueView:
        (found,) = [view for view in await self.overview() if view.name == self._known(queue)]
        return found

    async def overview(self) -> list[QueueView]:
        """Every queue of the registry, by name. The broker's counts are
        ``None`` if it does not answer within a second; the rest is the
        database's (``RepositoryUnavailable`` if it is down)."""
        paused = await self._switches.paused()
        loads = await self._loads.loads(self._clock.now())
        views = []
        for name in self._registry.queues():
            ready, dead = await self._depths_of(name)
            load = loads.get(name, QueueLoad())
            views.append(
                QueueView(
                    name=name,
                    paused=name in paused,
                    ready=ready,
                    dead_letters=dead,
                    running=load.running,
                    waiting=load.waiting,
                    scheduled=load.scheduled,
                )
            )
        return views

    async def _depths_of(self, queue: str) -> tuple[int | None, int | None]:
        if self._depths is None:
            return None, None
        try:
            async with asyncio.timeout(DEPTH_TIMEOUT_S):
                return await self._depths.depth(queue), await self._depths.dead_letter_depth(queue)
        except (ServiceUnavailable, TimeoutError) as exc:
            log.debug("depths of queue %r unknown: %s", queue, exc)
            return None, None
