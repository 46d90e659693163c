"""An in-process queue with the broker semantics the worker relies on.

Messages stay owned by their consumer until acked; ``requeue`` and closing a
consumer with unsettled messages put them back at the head of the queue, as
RabbitMQ does when a channel closes. Delayed messages become visible when due
by the core's ``Clock`` (a test's clock moves them; a timer on the event loop
looks again when the earliest is due, and ``release_due()`` looks at once).
Prefetch bounds how many unsettled messages one consumer holds of each
queue it subscribes to. Waiting messages of a queue are delivered highest
priority first, FIFO within a priority, as from a RabbitMQ queue with
``x-max-priority``; a consumer of several queues takes from them in turn. A
message that wakes several tasks is handed out as one delivery per task
(``wake_up_parts``), settled when all of them are, as RabbitMQ's consumer does.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial

from taskcore.adapters import wake_up_parts
from taskcore.adapters.wake_up_parts import WakeUpPart
from taskcore.clock import SystemClock
from taskcore.errors import QueueUnavailable
from taskcore.model.messages import split_wake_ups
from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.model.task import MAX_PRIORITY  # as the work queue's x-max-priority: higher counts as 9
from taskcore.ports import Clock


class MemoryDelivery:
    def __init__(
        self,
        consumer: MemoryConsumer,
        tag: int,
        body: bytes,
        redelivered: bool,
        priority: int = 0,
        queue: str = DEFAULT_QUEUE,
    ) -> None:
        self._consumer = consumer
        self.tag = tag
        self._body = body
        self.redelivered = redelivered
        self.priority = priority
        self.queue = queue
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
            self._consumer.queue._put_back(self._body, self.priority, self.queue)

    async def dead_letter(self, reason: str) -> None:
        if self._settle():
            self._consumer.queue.dead_letter_log.append((self._body, reason, self.queue))


class MemoryConsumer:
    def __init__(self, queue: MemoryQueue, prefetch: int, queues: Collection[str] = (DEFAULT_QUEUE,)) -> None:
        self.queue = queue
        self._prefetch = prefetch
        self._queues = list(dict.fromkeys(queues))
        self._turn = 0  # which of its queues it looks at first, in turn
        self.unsettled: dict[int, MemoryDelivery] = {}
        self._parts: deque[WakeUpPart] = deque()  # of a message waking several tasks, not handed out yet
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

    async def consume_only(self, queues: Collection[str]) -> None:
        """Only the parts of a message waking several tasks wait in a consumer
        here (``next`` takes from the queue): those of the others go back; then
        it stops taking from the others."""
        self._queues = list(dict.fromkeys(queues))
        for part in list(self._parts):  # a copy: next() may take parts while a requeue awaits
            if part.source not in self._queues:
                await part.requeue()  # its message goes back whole once its parts are settled
        self._parts = deque(part for part in self._parts if not part.settled)
        self._turn = 0
        self.queue._wake()

    def _takeable(self) -> str | None:
        """The next of its queues with a message waiting and room under its prefetch."""
        count = len(self._queues)
        for offset in range(count):
            name = self._queues[(self._turn + offset) % count]
            held = sum(1 for delivery in self.unsettled.values() if delivery.queue == name)
            if self.queue.depth_of(name) > 0 and held < self._prefetch:
                self._turn = (self._turn + offset + 1) % count
                return name
        return None

    async def next(self) -> MemoryDelivery | WakeUpPart:
        while self._parts:
            part = self._parts.popleft()
            if not part.settled:
                return part
        queue = self.queue
        queue.release_due()
        async with queue._cond:
            name: str | None = None

            def ready() -> bool:
                nonlocal name
                name = self._takeable()
                return name is not None

            await queue._cond.wait_for(ready)
            assert name is not None
            body, redelivered, priority = queue._take(name)
        delivery = MemoryDelivery(self, next(queue._tags), body, redelivered, priority, name)
        self.unsettled[delivery.tag] = delivery
        parts = wake_up_parts.split(
            body,
            ack=delivery.ack,
            requeue=delivery.requeue,
            dead_letter_one=partial(self._dead_letter_part, queue=name),
            source=name,
        )
        if parts is None:
            return delivery
        self._parts.extend(parts[1:])
        return parts[0]

    async def _dead_letter_part(self, body: bytes, reason: str, *, queue: str) -> None:
        self.queue.dead_letter_log.append((body, reason, queue))

    def _close(self) -> None:
        self.closed = True
        # Each goes back to the head, so walk them newest first: the queue then
        # holds them in their original order, as RabbitMQ redelivers them.
        for delivery in reversed(list(self.unsettled.values())):
            delivery.settled = True
            self.queue._put_back(delivery.body, delivery.priority, delivery.queue)
        self.unsettled.clear()
        self._parts.clear()


class _Waiting:
    """The messages waiting for a consumer: per queue, one FIFO per priority."""

    def __init__(self) -> None:
        self._lines: dict[str, list[deque[tuple[bytes, bool]]]] = {}  # (body, redelivered)

    def depth(self, queue: str | None = None) -> int:
        lines = self._lines.values() if queue is None else [self._lines.get(queue, [])]
        return sum(len(waiting) for line in lines for waiting in line)

    def wake_ups(self) -> int:
        return sum(
            len(split_wake_ups(body) or [body])
            for line in self._lines.values()
            for waiting in line
            for body, _ in waiting
        )

    def put(self, body: bytes, priority: int, queue: str, *, redelivered: bool, front: bool) -> None:
        line = self._lines.get(queue)
        if line is None:
            line = self._lines[queue] = [deque() for _ in range(MAX_PRIORITY + 1)]
        waiting = line[min(max(priority, 0), MAX_PRIORITY)]
        if front:
            waiting.appendleft((body, redelivered))
        else:
            waiting.append((body, redelivered))

    def take(self, queue: str) -> tuple[bytes, bool, int]:
        line = self._lines.get(queue, [])
        for priority in range(len(line) - 1, -1, -1):
            if line[priority]:
                body, redelivered = line[priority].popleft()
                return body, redelivered, priority
        raise LookupError("no message waiting")


class MemoryQueue:
    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        # Delayed messages: (due, sequence, body, priority, queue), earliest first.
        self._delayed: list[tuple[datetime, int, bytes, int, str]] = []
        self._sequence = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._ready = _Waiting()
        self._changed: asyncio.Condition | None = None
        self._tags = itertools.count(1)
        self._notifiers: set[asyncio.Task[None]] = set()
        self.available = True
        self.published = 0  # messages
        self.woken = 0  # task ids in the messages published (one message may wake several tasks)
        self.acked = 0
        self.dead_letter_log: list[tuple[bytes, str, str]] = []  # body, reason, queue

    @property
    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    @property
    def depth(self) -> int:
        """Messages waiting for a consumer in every queue (not counting delayed ones)."""
        return self._ready.depth()

    @property
    def wake_ups(self) -> int:
        """Task ids in the messages waiting for a consumer (``depth`` counts messages)."""
        return self._ready.wake_ups()

    def depth_of(self, queue: str) -> int:
        """Messages waiting for a consumer in ``queue``."""
        return self._ready.depth(queue)

    @property
    def dead_letters(self) -> list[tuple[bytes, str]]:
        """Every queue's dead letters: (body, reason), oldest first."""
        return [(body, reason) for body, reason, _ in self.dead_letter_log]

    def _take(self, queue: str) -> tuple[bytes, bool, int]:
        return self._ready.take(queue)

    def _wake(self) -> None:
        notifier = asyncio.get_running_loop().create_task(self._notify())
        self._notifiers.add(notifier)  # keep a reference until it has run
        notifier.add_done_callback(self._notifiers.discard)

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    def _enqueue(
        self, body: bytes, priority: int, queue: str, *, redelivered: bool = False, front: bool = False
    ) -> None:
        self._ready.put(body, priority, queue, redelivered=redelivered, front=front)
        self._wake()

    def _put_back(self, body: bytes, priority: int, queue: str) -> None:
        self._enqueue(body, priority, queue, redelivered=True, front=True)

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
        self._ready = _Waiting()
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
            _, _, body, priority, queue = heapq.heappop(self._delayed)
            self._enqueue(body, priority, queue)
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

    async def publish(
        self, body: bytes, *, delay: timedelta | None = None, priority: int = 0, queue: str = DEFAULT_QUEUE
    ) -> None:
        if not self.available:
            raise QueueUnavailable("memory queue switched off")
        self.published += 1
        self.woken += len(split_wake_ups(body) or [body])
        if delay is None or delay.total_seconds() <= 0:
            self._enqueue(body, priority, queue)
            return
        due = self._clock.now() + delay
        heapq.heappush(self._delayed, (due, next(self._sequence), body, priority, queue))
        self._schedule()

    @asynccontextmanager
    async def consume(
        self, prefetch: int, queues: Collection[str] = (DEFAULT_QUEUE,)
    ) -> AsyncIterator[MemoryConsumer]:
        consumer = MemoryConsumer(self, prefetch, queues)
        try:
            yield consumer
        finally:
            consumer._close()
