"""The consume loop: take deliveries, run up to ``concurrency`` at once, drain on stop.

Concurrency is bounded by a semaphore taken *before* the next delivery is
requested, so a worker never holds more messages than it can run (the broker's
prefetch is the same number). A wake-up that asks for its task to run alone
(a suspect task: its worker died while running it among others) takes every
slot: the worker waits for what runs to finish and starts nothing beside it,
so if the worker dies again, the task that killed it is known. Stopping means: take no new message, give
running tasks ``grace_s`` to finish, then cancel the rest; a cancelled task's
message is requeued unacked so another worker gets it.

``liveness()`` says whether the worker still consumes, for a health probe: not
when its consume loop ended, when its event loop stopped turning, or when its
consumer has been cut off from the broker for longer than ``stall_s``. It only
reads plain attributes, so a probe may call it from another thread, one that
still answers while the event loop is blocked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from taskcore.model.messages import runs_alone
from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.ports import Consumer, Delivery, TaskQueue, WorkTelemetry
from taskcore.telemetry import NoTelemetry
from taskcore.work.pauses import PauseWatcher
from taskcore.work.presence import WorkerPresence
from taskcore.work.processor import Outcome, TaskProcessor, requeue_quietly
from taskcore.work.sweeper import Sweeper

log = logging.getLogger("taskcore.worker")


@dataclass(frozen=True)
class Liveness:
    consuming: bool
    detail: str


class Background(Protocol):
    """A loop a worker runs beside its consume loop, until ``stop`` is set."""

    async def run(self, stop: asyncio.Event) -> None: ...


class Worker:
    def __init__(
        self,
        *,
        processor: TaskProcessor,
        queue: TaskQueue,
        concurrency: int = 16,
        grace_s: float = 30.0,
        sweeper: Sweeper | None = None,
        telemetry: WorkTelemetry | None = None,
        stall_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        presence: WorkerPresence | None = None,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        pauses: PauseWatcher | None = None,
        backgrounds: Sequence[Background] = (),
    ) -> None:
        """``queues``: the named queues it consumes (``taskcore worker --queue``);
        ``pauses`` keeps it off the paused ones (the processor's, too)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not queues:
            raise ValueError("a worker consumes at least one queue")
        self._processor = processor
        self._queue = queue
        self._queues = list(queues)
        self._pauses = pauses
        self._concurrency = concurrency
        self._grace_s = grace_s
        self._sweeper = sweeper
        # Loops beside the consume loop until it stops: waking tasks enqueued in
        # callers' transactions (CommitListener), sending webhooks (WebhookSender).
        self._backgrounds = list(backgrounds)
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[asyncio.Task[Outcome | None], int] = {}  # each with the slots it holds
        self._stop = asyncio.Event()
        self.outcomes: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self._telemetry = telemetry or NoTelemetry()
        self._stall_s = stall_s
        self._monotonic = monotonic
        self._subscribed = False
        self._ended = "not consuming yet"
        self._beat = monotonic()
        self._cut_off_since: float | None = None
        self._presence = presence
        self._consumer: Consumer | None = None

    @property
    def queues(self) -> list[str]:
        return list(self._queues)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def stop(self) -> None:
        """Ask ``run`` to drain and return; safe to call from a signal handler."""
        self._stop.set()

    def liveness(self) -> Liveness:
        """Whether this worker still consumes, and if not, why."""
        if self._stop.is_set():
            return Liveness(False, "stopping")
        if not self._subscribed:
            return Liveness(False, self._ended)
        now = self._monotonic()
        if now - self._beat > self._stall_s:
            return Liveness(False, f"stuck: the event loop has not turned for {now - self._beat:.0f} s")
        cut_off_since = self._cut_off_since
        if cut_off_since is not None and now - cut_off_since > self._stall_s:
            return Liveness(False, f"cut off from the broker for {now - cut_off_since:.0f} s")
        return Liveness(True, "consuming")

    async def run(self) -> None:
        loops = [self._sweeper, *self._backgrounds] if self._sweeper else self._backgrounds
        running = [asyncio.create_task(loop.run(self._stop)) for loop in loops]
        try:
            async with self._reporting():
                await self._consume()
        except BaseException as exc:
            self._ended = f"the consume loop ended: {type(exc).__name__}: {exc}"
            raise
        finally:
            if running:
                self._stop.set()
                await asyncio.gather(*running)

    async def _consume(self) -> None:
        async with self._queue.consume(prefetch=self._concurrency, queues=self._queues) as consumer:
            self._consumer = consumer
            stop_wait: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
            watching = asyncio.create_task(self._watch(consumer))
            pauses = asyncio.create_task(self._pauses.watch(consumer)) if self._pauses else None
            try:
                while await self._slot_or_stop(stop_wait):
                    delivery = await self._delivery_or_stop(consumer, stop_wait)
                    if delivery is None:
                        self._slots.release()
                        break
                    alone = self._concurrency == 1 or runs_alone(delivery.body)
                    if alone and not await self._every_slot_or_stop(stop_wait):
                        await requeue_quietly(delivery)
                        break
                    self._start(delivery, alone=alone)
            finally:
                self._subscribed = False
                self._ended = "stopped"
                stop_wait.cancel()
                watching.cancel()
                if pauses is not None:
                    pauses.cancel()
                await self._drain()
                self._consumer = None

    async def _watch(self, consumer: Consumer) -> None:
        """Beside the consume loop: a heartbeat that proves the event loop turns,
        and since when the consumer cannot receive anything."""
        tick = min(1.0, self._stall_s / 4)
        self._beat = self._monotonic()
        self._subscribed = True
        while True:
            now = self._monotonic()
            self._beat = now
            if consumer.connected:
                self._cut_off_since = None
            elif self._cut_off_since is None:
                self._cut_off_since = now
            await asyncio.sleep(tick)

    async def _slot_or_stop(self, stop_wait: asyncio.Future[Any]) -> bool:
        """Wait for a free slot, unless asked to stop first: a worker whose every
        slot is busy must still start its drain (and its grace period) at once.
        A free slot is taken at once, without the futures a wait needs."""
        if not self._slots.locked() and not self._stop.is_set():
            await self._slots.acquire()  # free: returns without suspending
            return True
        slot = asyncio.ensure_future(self._slots.acquire())
        waiters: set[asyncio.Future[Any]] = {slot, stop_wait}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not slot.done():
            slot.cancel()
            await asyncio.gather(slot, return_exceptions=True)
        acquired = slot.done() and not slot.cancelled()
        if acquired and self._stop.is_set():
            self._slots.release()
            return False
        return acquired

    async def _every_slot_or_stop(self, stop_wait: asyncio.Future[Any]) -> bool:
        """Holding one slot, take the others too: wait until nothing else runs.
        ``False`` (and none held) when asked to stop first."""
        if self._concurrency > 1:
            log.info("a task runs alone next: waiting for %d running task(s) to finish", len(self._running))
        for held in range(1, self._concurrency):
            if not await self._slot_or_stop(stop_wait):
                for _ in range(held):
                    self._slots.release()
                return False
        return True

    async def _delivery_or_stop(self, consumer: Consumer, stop_wait: asyncio.Future[Any]) -> Delivery | None:
        """The next delivery, or ``None`` when asked to stop first. A message
        that arrives together with the stop is requeued, not started."""
        next_delivery = asyncio.ensure_future(consumer.next())
        waiters: set[asyncio.Future[Any]] = {next_delivery, stop_wait}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not next_delivery.done():
            next_delivery.cancel()
            await asyncio.gather(next_delivery, return_exceptions=True)
        if not next_delivery.done() or next_delivery.cancelled():
            return None
        delivery = next_delivery.result()
        if self._stop.is_set():
            await delivery.requeue()
            return None
        return delivery

    def _start(self, delivery: Delivery, *, alone: bool) -> None:
        task = asyncio.create_task(self._handle(delivery, alone))
        self._running[task] = self._concurrency if alone else 1
        task.add_done_callback(self._finished)
        self._telemetry.tasks_in_flight(len(self._running))

    def _finished(self, task: asyncio.Task[Outcome | None]) -> None:
        for _ in range(self._running.pop(task, 1)):
            self._slots.release()
        self._telemetry.tasks_in_flight(len(self._running))
        if not task.cancelled() and (outcome := task.result()) is not None:
            self.outcomes[outcome] += 1

    async def _handle(self, delivery: Delivery, alone: bool) -> Outcome | None:
        try:
            return await self._processor.process(delivery, alone=alone)
        except asyncio.CancelledError:
            raise  # the processor has requeued the delivery
        except Exception:
            log.exception("unexpected error processing a delivery; requeueing it")
            await requeue_quietly(delivery)
            return None

    async def _drain(self) -> None:
        if not self._running:
            return
        log.info("draining %d running task(s), up to %.0f s", len(self._running), self._grace_s)
        _, pending = await asyncio.wait(set(self._running), timeout=self._grace_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cancelling %d task(s) still running after the grace period", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    @asynccontextmanager
    async def _reporting(self) -> AsyncIterator[None]:
        """Report this worker to the repository (``presence``) until the drain is over."""
        if self._presence is None:
            yield
            return
        reporting = asyncio.create_task(self._presence.run(self._tally), name="taskcore-worker-presence")
        try:
            yield
        finally:
            reporting.cancel()
            await asyncio.gather(reporting, return_exceptions=True)

    def _tally(self) -> tuple[int, int, int]:
        """(running now, attempts run to a verdict so far, messages held from the broker)."""
        ran = (Outcome.COMPLETED, Outcome.RETRY_SCHEDULED, Outcome.FAILED, Outcome.SUPERSEDED)
        held = self._consumer.held if self._consumer is not None else 0
        return self.in_flight, sum(self.outcomes[outcome] for outcome in ran), held
