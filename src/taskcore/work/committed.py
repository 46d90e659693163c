"""Waking the tasks enqueued inside callers' transactions once they commit.

Runs in every worker; the ``CommitNotices`` adapter lets one of them listen at
a time, so each committed task gets one wake-up, and another takes over when
that worker stops. A lost connection is retried after a pause; what was
committed meanwhile is published by the sweeper (the row's outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from taskcore.errors import ServiceUnavailable
from taskcore.model.status import TaskStatus
from taskcore.ports import CommitNotices, TaskReader
from taskcore.transitions.writer import Transitions

log = logging.getLogger("taskcore.committed")

RETRY_S = 2.0


class CommitListener:
    def __init__(
        self,
        *,
        notices: CommitNotices,
        reader: TaskReader,
        transitions: Transitions,
        retry_s: float = RETRY_S,
    ) -> None:
        self._notices = notices
        self._reader = reader
        self._transitions = transitions
        self._retry_s = retry_s

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set."""
        while not stop.is_set():
            listening = asyncio.ensure_future(self._listen())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({listening, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (listening, stopping):
                waiter.cancel()
            await asyncio.gather(listening, stopping, return_exceptions=True)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._retry_s)

    async def _listen(self) -> None:
        try:
            async with self._notices.committed() as batches:
                async for ids in batches:
                    await self.wake(ids)
        except ServiceUnavailable as exc:
            log.warning("not listening for committed tasks for now (the sweeper publishes them): %s", exc)
        except Exception:  # a bug must not end the listening for good: log it, listen again
            log.exception("listening for committed tasks failed (the sweeper publishes them)")

    async def wake(self, ids: list[int]) -> int:
        """Publish the wake-ups of these committed tasks (a blocked one is
        settled instead); how many were published."""
        woken = 0
        for task_id in ids:
            task = await self._reader.get(task_id, fresh=True)
            if task is None or task.status is not TaskStatus.PENDING:
                continue  # it moved on meanwhile (cancelled, or already taken by a worker)
            if task.blocked:
                await self._transitions.settle(task, task.created_at)
            else:
                woken += await self._transitions.republish(task)
        return woken
