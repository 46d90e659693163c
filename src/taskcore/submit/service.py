"""What clients call: submit, read, cancel and retry (one task, or every one a filter matches).

This is the library's entry point (``container.service()``); waiting and
listing have their own objects (``TaskWatcher``, the ``TaskFinder`` port).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

import msgspec

from taskcore.errors import ConfigurationError, InvalidInput, InvalidTransition, TaskNotFound, UnknownTaskType
from taskcore.handlers.registry import HandlerRegistry
from taskcore.model.batch import MAX_BATCH, TaskRequest
from taskcore.model.idempotency import IdempotencyConflict, IdempotencyKey, request_hash
from taskcore.model.query import TaskQuery
from taskcore.model.tags import check_metadata, check_tags
from taskcore.model.task import CANCELLABLE, DEFAULT_PRIORITY, RETRYABLE, NewTask, Task, check_priority
from taskcore.model.uniqueness import check_unique_key
from taskcore.model.webhooks import CallbackPolicy
from taskcore.model.workflows import check_after
from taskcore.ports import (
    Clock,
    SubmitTelemetry,
    SubmitTracing,
    TaskBatches,
    TaskFinder,
    TaskStore,
    Transaction,
    TransactionalStore,
)
from taskcore.submit.bulk import MAX_BULK, BulkChanges, BulkOutcome
from taskcore.submit.reads import TaskReads
from taskcore.telemetry import NoTelemetry
from taskcore.tracing import NoTracing
from taskcore.transitions.writer import Transitions

log = logging.getLogger("taskcore.service")

CAS_ATTEMPTS = 5
DEFAULT_IDEMPOTENCY_TTL = timedelta(days=1)


class Submitted(NamedTuple):
    """What a submit did (``TaskService.submit_detailed``): the task doing the
    work, and whether this call created it."""

    task: Task
    # An unfinished task of the type and owner had the unique key: ``task`` is that one.
    deduplicated: bool = False
    # The Idempotency-Key was used before: ``task`` (and ``deduplicated``) are what that use gave.
    replayed: bool = False

    @property
    def created(self) -> bool:
        return not self.deduplicated and not self.replayed


class TaskService:
    def __init__(
        self,
        *,
        tasks: TaskStore,
        transitions: Transitions,
        registry: HandlerRegistry,
        clock: Clock,
        idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL,
        telemetry: SubmitTelemetry | None = None,
        finder: TaskFinder | None = None,
        batches: TaskBatches | None = None,
        transactional: TransactionalStore | None = None,
        tracing: SubmitTracing | None = None,
        callbacks: CallbackPolicy | None = None,
    ) -> None:
        """``finder`` (the tasks' ``TaskFinder``) is what the bulk actions
        (``cancel_matching``, ``retry_matching``) walk; without it they are
        refused, and the rest works. ``tracing``: a span per submit, whose
        context each task it stores carries (``ports/tracing.py``)."""
        self._tasks = tasks
        self._transitions = transitions
        self._reads = TaskReads(tasks=tasks, cache=transitions.cache)
        self._bulk = (
            BulkChanges(finder=finder, reader=tasks, transitions=transitions) if finder is not None else None
        )
        self._batches = batches
        self._transactional = transactional
        self._registry = registry
        self._clock = clock
        self._idempotency_ttl = idempotency_ttl
        self._telemetry = telemetry or NoTelemetry()
        self._tracing = tracing or NoTracing()
        self._callbacks = callbacks or CallbackPolicy(signing=False)  # model/webhooks.py

    @property
    def tracing(self) -> SubmitTracing:
        """The tracer of its submits, for the other paths that create tasks (workflows)."""
        return self._tracing

    async def submit(
        self,
        task_type: str,
        input_data: Any,
        *,
        delay: timedelta | None = None,
        owner: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        queue: str | None = None,
        unique_key: str | None = None,
        after: Sequence[int] = (),
        run_anyway: bool = False,
        connection: Transaction | None = None,
        callback_url: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Task:
        """Validate, store as PENDING, wake a worker, write through to the
        cache; the task. With a unique key (``unique_key``, or the one the
        handler's ``unique`` function gives) that an unfinished task holds,
        that task instead: ``submit_detailed`` tells which happened.

        Validation happens first, so a rejected request writes nothing. The row
        is committed before the message is published, and a publish failure
        does not fail the submit: the task is stored, its message unconfirmed,
        and the sweeper publishes it once the broker is back. ``priority`` (0
        to 9, higher first) orders the task among those waiting for a worker;
        ``queue`` sends it to another known queue than its handler's.
        ``after`` names tasks (visible to ``owner``) it runs after: it starts
        once they have ended, and is cancelled if one FAILED or was CANCELLED
        unless ``run_anyway`` (``model/workflows.py``). With ``connection``
        (the caller's, in an open transaction: a psycopg ``AsyncConnection``)
        the task is stored inside it: nothing is visible or runs unless it
        commits, and its wake-up goes out once it does
        (``ports/transactional.py``). ``tags`` (up to 16 of 1 to 64 letters,
        digits and ``-_.:/=``, repeats dropped) label the task for listings to
        filter on; ``metadata`` (a JSON object of up to 4 KiB) is kept and
        returned with it (``model/tags.py``).
        """
        submitted = await self.submit_detailed(
            task_type,
            input_data,
            delay=delay,
            owner=owner,
            priority=priority,
            queue=queue,
            unique_key=unique_key,
            after=after,
            run_anyway=run_anyway,
            connection=connection,
            callback_url=callback_url,
            tags=tags,
            metadata=metadata,
        )
        return submitted.task

    async def submit_once(
        self,
        task_type: str,
        input_data: Any,
        *,
        idempotency_key: str,
        delay: timedelta | None = None,
        owner: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        queue: str | None = None,
        unique_key: str | None = None,
        after: Sequence[int] = (),
        run_anyway: bool = False,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[Task, bool]:
        """``submit`` under a client's Idempotency-Key: the first call creates
        the task, a retry with the same request returns it (``False``: not
        created now, as for a deduplicated one), a different request with the
        key is an ``IdempotencyConflict``."""
        submitted = await self.submit_detailed(
            task_type,
            input_data,
            idempotency_key=idempotency_key,
            delay=delay,
            owner=owner,
            priority=priority,
            queue=queue,
            unique_key=unique_key,
            after=after,
            run_anyway=run_anyway,
            tags=tags,
            metadata=metadata,
        )
        return submitted.task, submitted.created

    async def submit_detailed(
        self,
        task_type: str,
        input_data: Any,
        *,
        idempotency_key: str | None = None,
        unique_key: str | None = None,
        delay: timedelta | None = None,
        owner: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        queue: str | None = None,
        after: Sequence[int] = (),
        run_anyway: bool = False,
        connection: Transaction | None = None,
        callback_url: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Submitted:
        """``submit`` with every option, saying what it did.

        ``unique_key`` (1 to 255 characters) replaces the key the handler's
        ``unique`` function derives from the input: while an unfinished
        (PENDING or PROCESSING) task of this type and owner holds it, that
        task is returned, ``deduplicated``, and nothing is stored, published
        or counted. ``idempotency_key`` makes a retry of this very request
        return what its first use returned (``replayed``; with another
        request, ``IdempotencyConflict``), whatever became of the task: a
        replay never creates a task, even once the unique key is free again.
        """
        with self._tracing.submitting(task_type) as span:
            # In a caller's transaction the tasks it runs after may be its own
            # uncommitted ones: the store checks them there, as it stores it.
            parents = (
                check_after(after) if connection is not None else await self._visible_parents(after, owner)
            )
            new = self.new_task(
                task_type,
                input_data,
                delay=delay,
                owner=owner,
                priority=priority,
                queue=queue,
                unique_key=unique_key,
                after=parents,
                run_anyway=run_anyway,
                callback_url=callback_url,
                trace_context=span.trace_context,
                tags=tags,
                metadata=metadata,
            )
            if connection is not None:
                submitted = await self._submit_within(connection, new, idempotency_key)
            else:
                submitted = await self._store(new, idempotency_key, queue=queue, unique_key=unique_key)
            span.stored(submitted.task, created=submitted.created)
            return submitted

    async def _store(
        self, new: NewTask, idempotency_key: str | None, *, queue: str | None, unique_key: str | None
    ) -> Submitted:
        """Store a validated task, wake it and write it through; ``queue`` and
        ``unique_key`` as the request gave them, for its Idempotency-Key."""
        if idempotency_key is not None:
            fingerprint = request_hash(
                new.type,
                new.input,
                priority=new.priority,
                queue=queue,
                unique_key=unique_key,
                after=new.after,
                run_anyway=new.run_anyway,
                callback_url=new.callback_url,
                tags=new.tags,
                metadata=new.metadata,
            )
            key = IdempotencyKey(
                key=idempotency_key,
                request_hash=fingerprint,
                expired_before=new.created_at - self._idempotency_ttl,
            )
            once = await self._tasks.add_once(new, key)
            if once.replayed and once.request_hash != fingerprint:
                raise IdempotencyConflict(
                    "this Idempotency-Key was already used with a different request", key=idempotency_key
                )
            submitted = Submitted(once.task, deduplicated=once.deduplicated, replayed=once.replayed)
        elif new.unique_key is not None:
            added = await self._tasks.add_unique(new)
            submitted = Submitted(added.task, deduplicated=not added.created)
        else:
            submitted = Submitted(await self._tasks.add(new))
        if submitted.created:
            await self._transitions.created(submitted.task)
            self._telemetry.task_submitted(submitted.task.type, queue=submitted.task.queue)
            if submitted.task.blocked:  # the tasks it runs after may have ended already
                await self._transitions.settle(submitted.task, submitted.task.created_at)
        elif submitted.deduplicated and not submitted.replayed:
            self._telemetry.task_deduplicated(submitted.task.type, queue=submitted.task.queue)
        return submitted

    async def _submit_within(
        self, transaction: Transaction, new: NewTask, idempotency_key: str | None
    ) -> Submitted:
        """Stored in the caller's transaction: nothing is published or cached
        now (the transaction may still roll back); the commit's notice wakes
        it. The caller's transaction already makes its submit atomic with its
        own writes, so an Idempotency-Key has nothing to add."""
        if self._transactional is None:
            raise ConfigurationError("this TaskService cannot enqueue inside a caller's transaction")
        if idempotency_key is not None:
            raise InvalidInput("an Idempotency-Key cannot go with a caller's transaction")
        added = await self._transactional.add_within(transaction, new)
        if added.created:
            self._telemetry.task_submitted(added.task.type, queue=added.task.queue)
        return Submitted(added.task, deduplicated=not added.created)

    async def submit_many(
        self, requests: Sequence[TaskRequest], *, owner: str | None = None
    ) -> list[Submitted]:
        """Submit a batch (``model/batch.py``): each task validated as ``submit``
        validates one, the first bad one named by its position
        (``items[i]: ...``) before anything is stored; then all stored in one
        transaction (or none), and their wake-ups and cache writes sent
        together. A task whose unique key is taken is that key's holder
        (``deduplicated``)."""
        if self._batches is None:
            raise ConfigurationError("bulk submit needs the TaskService to be given its batches")
        if not 1 <= len(requests) <= MAX_BATCH:
            raise InvalidInput(f"a batch has 1 to {MAX_BATCH} tasks, got {len(requests)}")
        types = {request.type for request in requests}
        # One span for the batch: every task of it carries its context.
        with self._tracing.submitting(types.pop() if len(types) == 1 else None, count=len(requests)) as span:
            submitted = await self._submit_many(self._batches, requests, owner, span.trace_context)
            for one in submitted:
                span.stored(one.task, created=one.created)
            return submitted

    async def _submit_many(
        self,
        batches: TaskBatches,
        requests: Sequence[TaskRequest],
        owner: str | None,
        trace_context: str | None,
    ) -> list[Submitted]:
        news = []
        for index, request in enumerate(requests):
            try:
                news.append(
                    self.new_task(
                        request.type,
                        request.input,
                        delay=request.delay,
                        owner=owner,
                        priority=request.priority,
                        queue=request.queue,
                        unique_key=request.unique_key,
                        after=await self._visible_parents(request.after, owner),
                        run_anyway=request.run_anyway,
                        callback_url=request.callback_url,
                        trace_context=trace_context,
                        tags=request.tags,
                        metadata=request.metadata,
                    )
                )
            except (InvalidInput, UnknownTaskType) as exc:
                raise InvalidInput(f"items[{index}]: {exc}", index=index) from exc
        added = await batches.add_many(news)
        submitted = [Submitted(one.task, deduplicated=not one.created) for one in added]
        created = [one.task for one in submitted if one.created]
        await asyncio.gather(*(self._transitions.created(task) for task in created))
        for one in submitted:
            if one.created:
                self._telemetry.task_submitted(one.task.type, queue=one.task.queue)
            else:
                self._telemetry.task_deduplicated(one.task.type, queue=one.task.queue)
        for task in created:
            if task.blocked:
                await self._transitions.settle(task, task.created_at)
        return submitted

    async def _visible_parents(self, after: Sequence[int], owner: str | None) -> tuple[int, ...]:
        """``after`` without repeats, each a task ``owner`` can see (else ``InvalidInput``)."""
        ids = check_after(after)
        for parent_id in ids:
            parent = await self._tasks.get(parent_id, fresh=True)
            if parent is None or not parent.visible_to(owner):
                raise InvalidInput(f"it runs after task {parent_id}, which does not exist", after=parent_id)
        return ids

    def new_task(
        self,
        task_type: str,
        input_data: Any,
        *,
        delay: timedelta | None = None,
        owner: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        queue: str | None = None,
        unique_key: str | None = None,
        after: tuple[int, ...] = (),
        run_anyway: bool = False,
        workflow_id: int | None = None,
        step: str | None = None,
        callback_url: str | None = None,
        trace_context: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> NewTask:
        """Validate a task to submit (its type, input, queue, priority, unique
        key, callback URL, tags and metadata) and build what the store needs;
        raises what a refused submit answers. ``trace_context``: the submit
        span's, to store."""
        check_priority(priority)
        checked_tags, checked_metadata = check_tags(tags), check_metadata(metadata)
        if unique_key is not None:
            check_unique_key(unique_key)
        if callback_url is not None:
            self._callbacks.check(callback_url)
        handler = self._registry.get(task_type)
        if queue is not None and queue not in self._registry.queues():
            known = ", ".join(self._registry.queues())
            raise InvalidInput(f"unknown queue {queue!r}; the known queues are {known}", queue=queue)
        value = handler.parse_input(input_data)
        concurrency_key, rate_key = handler.limit_keys(value)
        now = self._clock.now()
        return NewTask(
            type=task_type,
            input=msgspec.to_builtins(value),
            max_attempts=handler.max_attempts,
            run_at=now + delay if delay else now,
            created_at=now,
            owner=owner,
            priority=priority,
            queue=queue or handler.queue,
            unique_key=unique_key if unique_key is not None else handler.unique_key(value),
            concurrency_key=concurrency_key,
            rate_key=rate_key,
            after=after,
            run_anyway=run_anyway,
            workflow_id=workflow_id,
            step=step,
            callback_url=callback_url,
            trace_context=trace_context,
            tags=checked_tags,
            metadata=checked_metadata,
        )

    async def get(
        self, task_id: int, *, owner: str | None = None, min_version: int = 0, from_database: bool = False
    ) -> Task:
        """Cache first, the database on a miss: see ``TaskReads.get``."""
        return await self._reads.get(
            task_id, owner=owner, min_version=min_version, from_database=from_database
        )

    async def cancel(self, task_id: int, *, owner: str | None = None) -> Task:
        """PENDING tasks never run; a PROCESSING task's worker notices at its
        next heartbeat, stops the handler and discards its result."""
        return await self._transition(task_id, owner, lambda task: task.cancel(self._clock.now()))

    async def retry(self, task_id: int, *, owner: str | None = None) -> Task:
        """Run a FAILED or CANCELLED task again with a fresh set of attempts;
        ``UniqueKeyTaken`` if another unfinished task holds its unique key."""
        return await self._transition(task_id, owner, lambda task: task.retry(self._clock.now()))

    async def cancel_matching(self, query: TaskQuery, *, limit: int = MAX_BULK) -> BulkOutcome:
        """Cancel the PENDING and PROCESSING tasks ``query`` matches (its
        owner, status, type, queue, creation times), as ``cancel`` does each
        one; at most ``limit`` (up to 10,000) are looked at, and the outcome
        says where a next call goes on (``query.before``). See ``submit/bulk.py``."""
        return await self._bulk_actions().apply(
            query, "cancel", CANCELLABLE, lambda task: task.cancel(self._clock.now()), limit=limit
        )

    async def retry_matching(self, query: TaskQuery, *, limit: int = MAX_BULK) -> BulkOutcome:
        """Retry the FAILED and CANCELLED tasks ``query`` matches, as ``retry``
        does each one (one whose unique key another unfinished task holds
        stays as it is); bounded and resumable as ``cancel_matching``."""
        return await self._bulk_actions().apply(
            query, "retry", RETRYABLE, lambda task: task.retry(self._clock.now()), limit=limit
        )

    def _bulk_actions(self) -> BulkChanges:
        if self._bulk is None:
            raise ConfigurationError("bulk actions need the TaskService to be given a finder")
        return self._bulk

    async def _transition(self, task_id: int, owner: str | None, change: Callable[[Task], Task]) -> Task:
        for _ in range(CAS_ATTEMPTS):
            current = await self._tasks.get(task_id, fresh=True)
            if current is None or not current.visible_to(owner):
                raise TaskNotFound(f"task {task_id} not found", task_id=task_id)
            changed = change(current)  # raises InvalidTransition
            if await self._transitions.record(changed):
                return changed
        raise InvalidTransition(f"task {task_id} keeps changing; try again", task_id=task_id)
