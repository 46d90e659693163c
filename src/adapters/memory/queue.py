"""An in-process queue with the broker semantics the worker relies on.

Messages stay owned by their consumer until acked; ``requeue`` and closing a
consumer with unsettled messages put them back at the head of the queue, as
RabbitMQ does when a channel closes. Delayed messages become visible when due
by the core's ``Clock`` (a test's clock moves them; a timer on the event loop
looks again when the earliest is due, and ``release_due()`` looks at once).
Prefetch bounds how many unsettled messages one consumer holds. Waiting
messages are delivered highest priority first, FIFO within a priority, as
from a RabbitMQ queue with ``x-max-priority``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from taskcore.clock import SystemClock
from taskcore.errors import QueueUnavailable
from taskcore.model.task import MAX_PRIORITY  # as the work queue's x-max-priority: higher counts as 9
from taskcore.ports import Clock


class MemoryDelivery:
    def __init__(
        self, consumer: MemoryConsumer, tag: int, body: bytes, redelivered: bool, priority: int = 0
    ) -> None:
        self._consumer = consumer
        self.tag = tag
        self._body = body
        self.redelivered = redelivered
        self.priority = priority
        self.settled = False

    @property
    def body(self) -> bytes:
        return self._body

    def _settle(self) -> bool:
        if self.settled:
            return False
        self.settled = True
        self._consumer._release(self)
        return True

    async def ack(self) -> None:
        if self._settle():
            self._consumer.queue.acked += 1

    async def requeue(self) -> None:
        if self._settle():
            self._consumer.queue._put_back(self._body, self.priority)

    async def dead_letter(self, reason: str) -> None:
        if self._settle():
            self._consumer.queue.dead_letters.append((self._body, reason))


class MemoryConsumer:
    def __init__(self, queue: MemoryQueue, prefetch: int) -> None:
        self.queue = queue
        self._prefetch = prefetch
        self.unsettled: dict[int, MemoryDelivery] = {}
        self.closed = False

    @property
    def connected(self) -> bool:
        """Like a broker connection: down while the queue is switched off."""
        return self.queue.available and not self.closed

    @property
    def held(self) -> int:
        return len(self.unsettled)

    def _release(self, delivery: MemoryDelivery) -> None:
        self.unsettled.pop(delivery.tag, None)
        self.queue._wake()

    async def next(self) -> MemoryDelivery:
        queue = self.queue
        queue.release_due()
        async with queue._cond:
            await queue._cond.wait_for(lambda: queue.depth > 0 and len(self.unsettled) < self._prefetch)
            body, redelivered, priority = queue._take()
        delivery = MemoryDelivery(self, next(queue._tags), body, redelivered, priority)
        self.unsettled[delivery.tag] = delivery
        return delivery

    def _close(self) -> None:
        self.closed = True
        # Each goes back to the head, so walk them newest first: the queue then
        # holds them in their original order, as RabbitMQ redelivers them.
        for delivery in reversed(list(self.unsettled.values())):
            delivery.settled = True
            self.queue._put_back(delivery.body, delivery.priority)
        self.unsettled.clear()


class MemoryQueue:
    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        # Delayed messages: (due, sequence, body, priority), earliest first.
        self._delayed: list[tuple[datetime, int, bytes, int]] = []
        self._sequence = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        # One FIFO per priority, index = priority: (body, redelivered).
        self._ready: list[deque[tuple[bytes, bool]]] = [deque() for _ in range(MAX_PRIORITY + 1)]
        self._changed: asyncio.Condition | None = None
        self._tags = itertools.count(1)
        self._notifiers: set[asyncio.Task[None]] = set()
        self.available = True
        self.published = 0
        self.acked = 0
        self.dead_letters: list[tuple[bytes, str]] = []

    @property
    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    @property
    def depth(self) -> int:
        """Messages waiting for a consumer (not counting delayed ones)."""
        return sum(len(waiting) for waiting in self._ready)

    def _take(self) -> tuple[bytes, bool, int]:
        for priority in range(MAX_PRIORITY, -1, -1):
            if self._ready[priority]:
                body, redelivered = self._ready[priority].popleft()
                return body, redelivered, priority
        raise LookupError("no message waiting")

    def _wake(self) -> None:
        notifier = asyncio.get_running_loop().create_task(self._notify())
        self._notifiers.add(notifier)  # keep a reference until it has run
        notifier.add_done_callback(self._notifiers.discard)

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    def _enqueue(self, body: bytes, priority: int, *, redelivered: bool = False, front: bool = False) -> None:
        waiting = self._ready[min(max(priority, 0), MAX_PRIORITY)]
        if front:
            waiting.appendleft((body, redelivered))
        else:
            waiting.append((body, redelivered))
        self._wake()

    def _put_back(self, body: bytes, priority: int) -> None:
        self._enqueue(body, priority, redelivered=True, front=True)

    async def open(self) -> None:
        """Nothing to connect; present so every adapter has the same lifecycle."""

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def purge(self) -> int:
        """Drop every message waiting for a consumer, as RabbitMQ's ``queue.purge``
        does (unsettled and delayed ones stay); how many were dropped."""
        dropped = self.depth
        for waiting in self._ready:
            waiting.clear()
        return dropped

    @property
    def delayed(self) -> int:
        """Messages published with a delay that is not over yet."""
        return len(self._delayed)

    def release_due(self) -> int:
        """Make the delayed messages that are due by the clock visible; how many were."""
        now = self._clock.now()
        released = 0
        while self._delayed and self._delayed[0][0] <= now:
            _, _, body, priority = heapq.heappop(self._delayed)
            self._enqueue(body, priority)
            released += 1
        self._schedule()
        return released

    def _schedule(self) -> None:
        """A timer for the earliest delayed message, in case nobody asks before it is due."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._delayed:
            wait = (self._delayed[0][0] - self._clock.now()).total_seconds()
            self._timer = asyncio.get_running_loop().call_later(max(wait, 0.0), self.release_due)

    async def ping(self) -> None:
        if not self.available:
            raise QueueUnavailable("memory queue switched off")

    async def publish(self, body: bytes, *, delay: timedelta | None = None, priority: int = 0) -> None:
        if not self.available:
            raise QueueUnavailable("memory queue switched off")
        self.published += 1
        if delay is None or delay.total_seconds() <= 0:
            self._enqueue(body, priority)
            return
        heapq.heappush(self._delayed, (self._clock.now() + delay, next(self._sequence), body, priority))
        self._schedule()

    @asynccontextmanager
    async def consume(self, prefetch: int) -> AsyncIterator[MemoryConsumer]:
        consumer = MemoryConsumer(self, prefetch)
        try:
            yield consumer
        finally:
            consumer._close()
