"""Processing one delivery: claim, run the handler, record the verdict, ack.

The order is the delivery guarantee. The claim is one guarded write, so a
duplicate message finds nothing to claim and is dropped. While the handler
runs, a heartbeat renews the claim's lease and its progress reports are
stored (``work/attempt.py``); a renewal or report that fails means the task
is no longer ours (cancelled, or released by a sweeper), so the handler is
cancelled. The verdict is saved with a compare-and-set on the version the
attempt last wrote, so a worker that lost its task cannot overwrite a newer
state. The message is acked only after the verdict is stored; if storing
fails the message is requeued (given back to the broker for another
consumer).
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import time
from concurrent.futures import Executor
from datetime import datetime
from typing import Any

import msgspec

from taskcore.config import CoreConfig
from taskcore.errors import InvalidInput, ServiceUnavailable, UnknownTaskType, UnstorableValue
from taskcore.handlers.context import TaskContext
from taskcore.handlers.registry import Handler, HandlerRegistry
from taskcore.model.messages import InvalidMessage, decode_task_message
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.model.workflows import parent_results
from taskcore.ports import AttemptStore, Clock, Delivery, Dependencies, RunSpan, WorkTelemetry, WorkTracing
from taskcore.telemetry import NoTelemetry
from taskcore.tracing import NoTracing
from taskcore.transitions.writer import Transitions
from taskcore.work import log_context
from taskcore.work.attempt import Attempt
from taskcore.work.pauses import PauseWatcher

log = logging.getLogger("taskcore.processor")


class Outcome(enum.Enum):
    COMPLETED = "completed"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    SKIPPED = "skipped"  # duplicate, cancelled or not yet due: nothing to do
    SUPERSEDED = "superseded"  # the task changed under us; our verdict was discarded
    DEAD_LETTERED = "dead_lettered"
    REQUEUED = "requeued"  # a backing service failed; the message goes back to the broker
    PAUSED = "paused"  # its queue is paused: the message goes back to the broker, to wait there
    DEFERRED = "deferred"  # over its rate limit: it waits for its reserved start, with a wake-up for then


async def requeue_quietly(delivery: Delivery) -> None:
    """Hand a delivery back; if even that fails, the broker redelivers it when the channel closes."""
    try:
        await delivery.requeue()
    except Exception as exc:
        log.warning("could not hand a delivery back: %s", exc)


class _HandlerFailed(Exception):
    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class _LeaseLost(Exception):
    """The heartbeat found the task taken from this attempt."""


class TaskProcessor:
    def __init__(
        self,
        *,
        attempts: AttemptStore,
        transitions: Transitions,
        clock: Clock,
        registry: HandlerRegistry,
        config: CoreConfig,
        executor: Executor | None = None,
        telemetry: WorkTelemetry | None = None,
        pauses: PauseWatcher | None = None,
        dependencies: Dependencies | None = None,
        tracing: WorkTracing | None = None,
    ) -> None:
        """``pauses``: the worker's view of the paused queues; without it a
        wake-up whose queue is paused is dropped (the sweeper wakes the task
        again much later), so a worker should have one. ``tracing``: a span
        per claim and per attempt, in the trace the task carries; the
        attempt's is current while its handler runs."""
        self._attempts = attempts
        self._pauses = pauses
        self._dependencies = dependencies  # the results of the tasks a step runs after
        self._transitions = transitions
        self._clock = clock
        self._registry = registry
        self._config = config
        self._executor = executor
        self._telemetry = telemetry or NoTelemetry()
        self._tracing = tracing or NoTracing()

    async def process(self, delivery: Delivery, *, alone: bool = False) -> Outcome:
        """``alone``: the worker runs nothing else while this delivery's task
        runs, so a suspect task may start, and the attempt is charged if the
        worker dies (``Task.release``)."""
        try:
            task_id = decode_task_message(delivery.body)
        except InvalidMessage as exc:
            await delivery.dead_letter(str(exc))
            self._telemetry.message_dead_lettered("invalid_message")
            return Outcome.DEAD_LETTERED
        with log_context.handling(task_id):
            try:
                return await self._process(task_id, delivery, alone)
            except asyncio.CancelledError:
                await asyncio.shield(requeue_quietly(delivery))
                raise
            except ServiceUnavailable as exc:
                log.warning("task %s requeued: %s", task_id, exc)
                await delivery.requeue()
                return Outcome.REQUEUED

    async def _process(self, task_id: int, delivery: Delivery, alone: bool) -> Outcome:
        now = self._clock.now()
        with self._tracing.claiming() as claim:
            claimed = await self._attempts.claim(task_id, now, self._config.lease, alone=alone)
            if claimed is not None:
                claim.claimed(claimed)
        if claimed is None:
            return await self._settle_unclaimed(task_id, delivery)
        if claimed.status is TaskStatus.PENDING:  # deferred by its rate limit
            await self._transitions.deferred(claimed)
            await delivery.ack()
            return Outcome.DEFERRED
        # The run span is current from here: the handler's task and thread copy this context.
        with self._tracing.running(claimed) as run:
            outcome = await self._attempt(claimed, delivery, run, now)
            run.settled(outcome.value)
            return outcome

    async def _attempt(self, claimed: Task, delivery: Delivery, run: RunSpan, now: datetime) -> Outcome:
        """Run the claimed attempt, store its verdict, ack."""
        task_id = claimed.id
        log_context.claimed(claimed)
        waited = max(0.0, (now - claimed.run_at).total_seconds())
        self._telemetry.task_claimed(claimed.type, waited, queue=claimed.queue)
        # The PROCESSING write-through goes out while the handler runs: the
        # handler does not need it, and it is done before the verdict is
        # stored, so the cache and the waiters see the states in order.
        caching = asyncio.ensure_future(self._transitions.written(claimed))
        started = time.perf_counter()
        attempt = Attempt(
            claimed,
            attempts=self._attempts,
            transitions=self._transitions,
            clock=self._clock,
            config=self._config,
        )
        try:
            verdict = await self._verdict(attempt, run)
        except asyncio.CancelledError:
            # Shutting down mid-run: undo the claim so the next worker claims
            # it at once instead of waiting for the lease to lapse.
            await asyncio.shield(self._unclaim(attempt, after=caching))
            raise
        except _LeaseLost:
            await caching
            log.info("task %s was cancelled or taken over while attempt %s ran", task_id, claimed.attempts)
            await delivery.ack()
            return Outcome.SUPERSEDED
        await self._keep_lease(attempt, caching)
        self._telemetry.task_ran(claimed.type, time.perf_counter() - started, queue=claimed.queue)
        # Storing the verdict and acking must not be torn apart by a
        # cancellation (a drain that ran out of grace): the verdict is ready,
        # so finishing the write and the ack is the clean way to stop.
        recording = asyncio.ensure_future(self._record(attempt.current, verdict, delivery, run))
        try:
            return await asyncio.shield(recording)
        except asyncio.CancelledError:
            return await recording

    async def _unclaim(self, attempt: Attempt, *, after: asyncio.Future[None]) -> None:
        """The delivery is requeued by ``process``: that message is the wake-up,
        so the transition is recorded without publishing another. A report not
        written yet is dropped: the next attempt starts without progress."""
        await asyncio.gather(after, return_exceptions=True)  # the PROCESSING write first
        await attempt.finish()  # a progress write under way lands first: unclaim from its version
        if attempt.lost.done():
            return
        try:
            await self._transitions.record(attempt.current.unclaim(self._clock.now()), publish=False)
        except ServiceUnavailable as exc:
            log.warning("task %s not unclaimed (%s); its lease will lapse", attempt.current.id, exc)

    async def _settle_unclaimed(self, task_id: int, delivery: Delivery) -> Outcome:
        current = await self._attempts.get(task_id, fresh=True)
        if current is None:
            await delivery.dead_letter(f"no task with id {task_id}")
            self._telemetry.message_dead_lettered("unknown_task")
            return Outcome.DEAD_LETTERED
        if (
            self._pauses is not None
            and current.is_due(self._clock.now())
            and await self._pauses.is_paused(current.queue)
        ):
            # Not this worker's to drop: the wake-up waits at the broker for the
            # resume (the watcher has taken the consumer off the queue first).
            await delivery.requeue()
            return Outcome.PAUSED
        # A redelivery after a worker died between its commit and its cache
        # write: refresh the cache (version-guarded, so harmless otherwise).
        await self._transitions.written(current)
        await delivery.ack()
        return Outcome.SKIPPED

    async def _verdict(self, attempt: Attempt, run: RunSpan) -> Task:
        """Computed from the task as the attempt last wrote it, with its last
        report not written yet (the attempt's writes are over by then)."""
        claimed = attempt.current
        try:
            handler = self._registry.get(claimed.type)
            value = handler.parse_input(claimed.input)
        except (UnknownTaskType, InvalidInput) as exc:
            run.failed(str(exc), exc)
            return claimed.fail(str(exc), self._clock.now(), None)
        context = TaskContext(claimed, await self._results_for(claimed, handler), attempt.report)
        try:
            result = await self._run_with_heartbeat(attempt, handler, value, context)
        except _HandlerFailed as exc:
            run.failed(str(exc), exc.__cause__)
            policy = handler.retry or self._config.retry
            retry_in = policy.delay(claimed.attempts) if exc.retryable else None
            report = await attempt.finish()
            return attempt.current.fail(str(exc), self._clock.now(), retry_in, report=report)
        except BaseException:
            await attempt.finish()  # lost, or shutting down: nothing more is written
            raise
        report = await attempt.finish()
        return attempt.current.complete(result, self._clock.now(), report=report)

    async def _results_for(self, claimed: Task, handler: Handler) -> dict[str, Any]:
        """The results of the tasks it runs after, for a handler that declares
        a ``TaskContext`` (read only then: a task without one needs none)."""
        if handler.context is None or not claimed.after or self._dependencies is None:
            return {}
        return parent_results(await self._dependencies.parents(claimed))

    async def _run_with_heartbeat(
        self, attempt: Attempt, handler: Handler, value: Any, context: TaskContext
    ) -> Any:
        """The handler's result; ``_LeaseLost`` as soon as a renewal, or a
        progress write, finds the task taken from this attempt."""
        run = asyncio.ensure_future(self._run(handler, value, context))
        interval = self._config.lease_s / 3
        try:
            while True:
                await asyncio.wait({run, attempt.lost}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                if run.done():
                    return run.result()
                if attempt.lost.done() or not await attempt.renew():
                    raise _LeaseLost
        finally:
            if not run.done():
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)

    async def _keep_lease(self, attempt: Attempt, caching: asyncio.Future[None]) -> None:
        """Wait for the PROCESSING write-through before the verdict, renewing the
        lease as the heartbeat does: the attempt is still ours until its verdict
        is stored, and a cache that holds the write (up to its timeout) must not
        let the lease lapse and a sweeper run the task a second time. A renewal
        that finds the task taken stops the renewing; the verdict's
        compare-and-set then finds it taken too."""
        interval = self._config.lease_s / 3
        while not caching.done():
            await asyncio.wait({caching}, timeout=interval)
            if not caching.done() and not await attempt.renew():
                break
        await caching

    async def _run(self, handler: Handler, value: Any, context: TaskContext) -> Any:
        timeout = handler.timeout_s or self._config.task_timeout_s
        try:
            async with asyncio.timeout(timeout):
                result = await self._call(handler, value, context)
        except TimeoutError as exc:
            raise _HandlerFailed(f"timed out after {timeout:g} s") from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _HandlerFailed(f"{type(exc).__name__}: {exc}") from exc
        try:
            return msgspec.to_builtins(result)
        except TypeError as exc:
            raise _HandlerFailed(f"result is not serialisable: {exc}", retryable=False) from exc

    async def _call(self, handler: Handler, value: Any, context: TaskContext) -> Any:
        if handler.is_async:
            return await handler.call(value, context)
        loop = asyncio.get_running_loop()
        # The thread runs in a copy of this context, so the handler's log lines name the task.
        variables = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, variables.run, handler.bind(value, context))

    async def _record(self, claimed: Task, verdict: Task, delivery: Delivery, run: RunSpan) -> Outcome:
        try:
            saved = await self._transitions.record(verdict)  # a retry's wake-up is delayed until run_at
        except UnstorableValue as exc:
            # The handler produced something the repository cannot hold: that is
            # the handler's failure, final, not a reason to redeliver forever.
            run.failed(f"the verdict cannot be stored: {exc}", exc)
            verdict = claimed.fail(f"the verdict cannot be stored: {exc}", self._clock.now(), None)
            saved = await self._transitions.record(verdict)
        if not saved:
            log.info(
                "task %s changed while running; result of attempt %s discarded", claimed.id, claimed.attempts
            )
            await delivery.ack()
            return Outcome.SUPERSEDED
        await delivery.ack()
        if verdict.status is TaskStatus.COMPLETED:
            self._telemetry.task_settled(verdict.type, "completed", queue=verdict.queue)
            log.info("task %s completed on attempt %s", verdict.id, verdict.attempts)
            return Outcome.COMPLETED
        if verdict.status is TaskStatus.PENDING:
            self._telemetry.task_settled(verdict.type, "retried", queue=verdict.queue)
            log.info("task %s attempt %s failed, retrying: %s", verdict.id, verdict.attempts, verdict.error)
            return Outcome.RETRY_SCHEDULED
        self._telemetry.task_settled(verdict.type, "failed", queue=verdict.queue)
        log.warning("task %s failed after %s attempts: %s", verdict.id, verdict.attempts, verdict.error)
        return Outcome.FAILED
