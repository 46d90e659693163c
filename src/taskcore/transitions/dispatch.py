"""Publishing wake-ups, and recording the broker's confirmations in batches.

The task row is the outbox: ``dispatched_at`` stays empty until the broker
confirmed the task's message, and the sweeper publishes again whatever stayed
unconfirmed. Confirmations are written in one UPDATE per short window instead
of one per task, so the submit path pays no extra round trip. Losing a batch
(a crash before the flush) only costs a harmless duplicate message later.

Wake-ups due now are coalesced too: the tasks of one queue and priority
whose dispatches meet (those of one group-committed INSERT, or of a bulk
submit, arrive together) share one message (``model/messages.py``), so one
publish, one confirm, one delivery and one ack carry up to ``batch`` of them.
A lone dispatch is sent at once, alone. Delayed and suspect wake-ups go
alone: a delay is per message, and a suspect must be known to run alone
before its worker claims anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from taskcore.batching import Coalescer
from taskcore.errors import QueueUnavailable, ServiceUnavailable
from taskcore.model.messages import MAX_WAKE_UPS, encode_task_message, encode_wake_ups
from taskcore.model.task import Task
from taskcore.ports import Clock, DispatchLog, TaskQueue

log = logging.getLogger("taskcore.dispatch")

_TICK = timedelta(microseconds=1)  # PostgreSQL's timestamp resolution


class Dispatcher:
    def __init__(
        self,
        *,
        log: DispatchLog,
        queue: TaskQueue,
        clock: Clock,
        flush_delay_s: float = 0.05,
        batch: int = 16,
    ) -> None:
        """``batch``: at most this many wake-ups in one message (1: one each)."""
        if not 1 <= batch <= MAX_WAKE_UPS:
            raise ValueError(f"a wake-up batch is 1 to {MAX_WAKE_UPS}, got {batch}")
        self._log = log
        self._queue = queue
        self._clock = clock
        self._flush_delay_s = flush_delay_s
        self._batch = batch
        self._confirmed: list[tuple[int, datetime]] = []  # each task with its message's confirmation
        self._last_confirmed: datetime | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._together: dict[tuple[str, int], Coalescer[int, bool]] = {}  # (queue, priority) -> its wake-ups

    async def dispatch(self, task: Task) -> bool:
        """Publish ``task``'s wake-up (delayed until its ``run_at``); ``False`` if
        the broker did not take it, in which case the sweeper will."""
        delay = task.run_at - self._clock.now()
        if self._batch > 1 and delay.total_seconds() <= 0 and not task.suspect:
            return await self._coalesced(task.queue, task.priority).call(task.id)
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
        self._confirmed_now([task.id])
        return True

    def _coalesced(self, queue: str, priority: int) -> Coalescer[int, bool]:
        key = (queue, priority)
        together = self._together.get(key)
        if together is None:

            async def publish(task_ids: list[int]) -> Sequence[bool]:
                return await self._publish_together(task_ids, queue, priority)

            together = self._together[key] = Coalescer(
                publish, max_batch=self._batch, name=f"taskcore-wake-ups-{queue}"
            )
        return together

    async def _publish_together(self, task_ids: list[int], queue: str, priority: int) -> Sequence[bool]:
        try:
            await self._queue.publish(encode_wake_ups(task_ids), priority=priority, queue=queue)
        except QueueUnavailable as exc:
            shown = " ".join(map(str, task_ids))
            log.warning("task(s) %s stored but not published (the sweeper will): %s", shown, exc)
            return [False] * len(task_ids)
        self._confirmed_now(task_ids)
        return [True] * len(task_ids)

    def _confirmed_now(self, task_ids: Sequence[int]) -> None:
        """Buffered with their message's confirmation time, one time per
        message: the wake-up census counts messages as distinct times, so two
        messages confirmed within one tick of the clock get times a
        microsecond apart."""
        at = self._clock.now()
        if self._last_confirmed is not None and at <= self._last_confirmed:
            at = self._last_confirmed + _TICK
        self._last_confirmed = at
        self._confirmed.extend((task_id, at) for task_id in task_ids)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        """Until nothing is buffered: a confirmation that arrives while a
        flush waits on the database must not wait for the next publish (the
        API has no sweeper to write it otherwise)."""
        while self._confirmed:
            await asyncio.sleep(self._flush_delay_s)
            await self.flush()

    async def flush(self) -> None:
        buffered, self._confirmed = self._confirmed, []
        if not buffered:
            return
        # A task confirmed twice within one window (a fast retry) keeps its latest message's time.
        confirmed = list(dict(buffered).items())
        try:
            await self._log.mark_dispatched(confirmed)
        except ServiceUnavailable as exc:
            log.warning(
                "could not record %d confirmations (messages may be sent twice): %s", len(confirmed), exc
            )

    async def aclose(self) -> None:
        """Write the confirmations still buffered; call before the repository closes."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        await self.flush()
