"""Waiting for a task to change without polling the database.

One subscription to the change feed per process is fanned out to every
request waiting on a task. A waiter holds no database connection while it
waits: it reads the task (cache first) when a notification says it changed,
and reads the database anyway every ``recheck_s``, which covers notifications
lost while the feed was down or the subscription was being re-established.
A long poll waits for a final state only, so only a final state wakes it: a
running task's progress reports (a transition each, up to a few a second)
would otherwise make every long poll on it read the task for nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager

from taskcore.errors import ServiceUnavailable
from taskcore.model.changes import TaskChange
from taskcore.model.task import Task
from taskcore.ports import ChangeFeed
from taskcore.submit.reads import TaskReads

log = logging.getLogger("taskcore.waiting")

MAX_RESUBSCRIBE_S = 10.0


class _Signal:
    """Set when a task a waiter watches was announced at a newer version (a
    final one, for a waiter that waits for nothing else)."""

    def __init__(self, *, final_only: bool = False) -> None:
        self.event = asyncio.Event()
        self.announced = 0
        self._final_only = final_only

    def notify(self, change: TaskChange) -> None:
        if self._final_only and not change.status.is_final:
            return
        if change.version > self.announced:
            self.announced = change.version
            self.event.set()


class ChangeListener:
    """The process's one subscription, dispatching changes to waiters by task id."""

    def __init__(self, feed: ChangeFeed, *, resubscribe_s: float = 0.5) -> None:
        self._feed = feed
        self._resubscribe_s = resubscribe_s
        self._signals: dict[int, set[_Signal]] = {}
        self.subscribed = asyncio.Event()

    @property
    def waiting(self) -> int:
        """How many waiters are registered (a gauge for operators and tests)."""
        return sum(len(signals) for signals in self._signals.values())

    @contextmanager
    def watching(self, task_id: int, *, final_only: bool = False) -> Iterator[_Signal]:
        signal = _Signal(final_only=final_only)
        self._signals.setdefault(task_id, set()).add(signal)
        try:
            yield signal
        finally:
            signals = self._signals.get(task_id)
            if signals is not None:
                signals.discard(signal)
                if not signals:
                    del self._signals[task_id]

    def notify(self, change: TaskChange) -> None:
        """Fan ``change`` out to the waiters on its task."""
        for signal in self._signals.get(change.id, ()):
            signal.notify(change)

    async def run(self) -> None:
        """Stay subscribed until cancelled, re-subscribing with backoff after a loss."""
        delay = self._resubscribe_s
        while True:
            try:
                async with self._feed.subscribe() as changes:
                    self.subscribed.set()
                    delay = self._resubscribe_s
                    log.debug("subscribed to task changes")
                    async for change in changes:
                        self.notify(change)
            except ServiceUnavailable as exc:
                log.warning("change feed lost, re-subscribing in %.1f s: %s", delay, exc)
            finally:
                self.subscribed.clear()
            await asyncio.sleep(delay)
            delay = min(MAX_RESUBSCRIBE_S, delay * 2)


class TaskWatcher:
    """The task's states as they change, for long polls and event streams."""

    def __init__(
        self,
        reads: TaskReads,
        listener: ChangeListener,
        *,
        recheck_s: float = 5.0,
        max_wait_s: float = 60.0,
        max_stream_s: float = 3600.0,
    ) -> None:
        self._reads = reads
        self._listener = listener
        self._recheck_s = recheck_s
        self.max_wait_s = max_wait_s
        self.max_stream_s = max_stream_s

    async def changes(
        self,
        task_id: int,
        *,
        owner: str | None,
        timeout_s: float,
        after_version: int = 0,
        every_read: bool = False,
        final_only: bool = False,
    ) -> AsyncGenerator[Task, None]:
        """Yield the task whenever its version passes the last one yielded (or
        ``after_version``), until it is final or ``timeout_s`` has passed;
        with ``every_read``, after every read even if unchanged (a stream's
        chance to send a keep-alive). With ``final_only``, only a final state
        is worth waking for (and the re-checks): what changed before it may
        go unseen.

        The first read happens at once, so an unknown id or another owner's
        task raises ``TaskNotFound`` before anything is yielded.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        seen = after_version
        with self._listener.watching(task_id, final_only=final_only) as signal:
            minimum, recheck = 0, False
            while True:
                signal.event.clear()
                task = await self._reads.get(task_id, owner=owner, min_version=minimum, from_database=recheck)
                if task.version > seen or every_read:
                    seen = max(seen, task.version)
                    yield task
                remaining = deadline - loop.time()
                if task.is_final or remaining <= 0:
                    return
                try:
                    await asyncio.wait_for(signal.event.wait(), min(remaining, self._recheck_s))
                    # Announced: the cache was written first, unless that write
                    # failed; then the database answers.
                    minimum, recheck = signal.announced, False
                except TimeoutError:
                    # No news for recheck_s: ask the database itself, in case a
                    # notification was lost. At the deadline the cache will do.
                    minimum, recheck = 0, remaining > self._recheck_s

    async def wait(self, task_id: int, *, owner: str | None, timeout_s: float) -> Task:
        """The task once final, or as it is when ``timeout_s`` (at most
        ``max_wait_s``) ends; woken by nothing but its end (or a re-check)."""
        last: Task | None = None
        timeout_s = min(timeout_s, self.max_wait_s)
        async for task in self.changes(task_id, owner=owner, timeout_s=timeout_s, final_only=True):
            last = task
        assert last is not None  # the first read always yields (version >= 1 > 0)
        return last
