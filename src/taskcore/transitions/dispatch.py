"""Publishing wake-ups, and recording the broker's confirmations in batches.

The task row is the outbox: ``dispatched_at`` stays empty until the broker
confirmed the task's message, and the sweeper publishes again whatever stayed
unconfirmed. Confirmations are written in one UPDATE per short window instead
of one per task, so the submit path pays no extra round trip. Losing a batch
(a crash before the flush) only costs a harmless duplicate message later.
"""

from __future__ import annotations

import asyncio
import logging

from taskcore.errors import QueueUnavailable, ServiceUnavailable
from taskcore.model.messages import encode_task_message
from taskcore.model.task import Task
from taskcore.ports import Clock, DispatchLog, TaskQueue

log = logging.getLogger("taskcore.dispatch")


class Dispatcher:
    def __init__(
        self,
        *,
        log: DispatchLog,
        queue: TaskQueue,
        clock: Clock,
        flush_delay_s: float = 0.05,
    ) -> None:
        self._log = log
        self._queue = queue
        self._clock = clock
        self._flush_delay_s = flush_delay_s
        self._confirmed: list[int] = []
        self._flusher: asyncio.Task[None] | None = None

    async def dispatch(self, task: Task) -> bool:
        """Publish ``task``'s wake-up (delayed until its ``run_at``); ``False`` if
        the broker did not take it, in which case the sweeper will."""
        delay = task.run_at - self._clock.now()
        try:
            await self._queue.publish(
                encode_task_message(task.id, alone=task.suspect),
                delay=delay if delay.total_seconds() > 0 else None,
                priority=task.priority,
                queue=task.queue,
            )
        except QueueUnavailable as exc:
            log.warning("task %s stored but not published (the sweeper will): %s", task.id, exc)
            return False
        self._confirmed.append(task.id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())
        return True

    async def _flush_soon(self) -> None:
        """Until nothing is buffered: a confirmation that arrives while a
        flush waits on the database must not wait for the next publish (the
        API has no sweeper to write it otherwise)."""
        while self._confirmed:
            await asyncio.sleep(self._flush_delay_s)
            await self.flush()

    async def flush(self) -> None:
        ids, self._confirmed = self._confirmed, []
        if not ids:
            return
        try:
            await self._log.mark_dispatched(ids, self._clock.now())
        except ServiceUnavailable as exc:
            log.warning("could not record %d confirmations (messages may be sent twice): %s", len(ids), exc)

    async def aclose(self) -> None:
        """Write the confirmations still buffered; call before the repository closes."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        await self.flush()
