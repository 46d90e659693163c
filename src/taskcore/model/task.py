"""The task entity: its fields and the only legal ways its status can change.

Transitions are methods that return a new ``Task`` with ``version`` bumped by
one, or raise ``InvalidTransition``. Repositories persist a transition with a
compare-and-set on the previous version, so the rules live here and storage
only guards against concurrent writers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from taskcore.errors import InvalidInput, InvalidTransition
from taskcore.model.attempts import Attempt, AttemptOutcome, ended, started
from taskcore.model.progress import Progress
from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.model.status import TaskStatus

MIN_PRIORITY = 0
MAX_PRIORITY = 9  # the broker's work queue is declared with this x-max-priority
DEFAULT_PRIORITY = 0

CANCELLABLE = frozenset({TaskStatus.PENDING, TaskStatus.PROCESSING})
RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})
"""The statuses ``Task.cancel`` and ``Task.retry`` accept, for whoever picks
the tasks to change (a bulk action selects these)."""

MAX_TASK_ID = 2**63 - 1
"""Ids are PostgreSQL ``bigint``s: a larger number names no task (a poison message can carry one)."""


def check_priority(priority: object) -> int:
    """``priority`` if it is an int from 0 to 9 (higher runs first), else ``InvalidInput``."""
    if type(priority) is not int or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(
            f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}, got {priority!r}",
            priority=priority,
        )
    return priority


class NewTask(msgspec.Struct, frozen=True, kw_only=True):
    """What the repository needs to store a freshly submitted task."""

    type: str
    input: Any
    max_attempts: int
    run_at: datetime
    created_at: datetime
    owner: str | None = None
    priority: int = DEFAULT_PRIORITY
    queue: str = DEFAULT_QUEUE
    concurrency_key: str | None = None  # model/limits.py: None when its handler has no such limit
    rate_key: str | None = None
    # Workflows (model/workflows.py): the tasks it runs after, and its place in a workflow.
    after: tuple[int, ...] = ()
    run_anyway: bool = False  # start when the tasks it runs after end, even if one FAILED or was CANCELLED
    workflow_id: int | None = None
    step: str | None = None
    unique_key: str | None = None  # model/uniqueness.py
    callback_url: str | None = None  # model/webhooks.py: told when the task ends
    # The submit's trace, as the tracer serialises it (ports/tracing.py); None: not traced.
    trace_context: str | None = None
    # model/tags.py: labels a listing filters on, and a JSON object the service only keeps.
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = {}

    def __post_init__(self) -> None:
        check_priority(self.priority)


class Task(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    type: str
    input: Any
    status: TaskStatus
    result: Any = None
    error: str | None = None
    attempts: int = 0
    max_attempts: int = 3
    version: int = 1
    created_at: datetime
    updated_at: datetime
    run_at: datetime
    lease_until: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    owner: str | None = None
    priority: int = DEFAULT_PRIORITY  # 0 to 9, higher runs first; kept by retries and re-dispatches
    queue: str = DEFAULT_QUEUE  # the named queue it waits in (model/queues.py)
    # The keys its starts are limited under (model/limits.py); None: not limited.
    concurrency_key: str | None = None
    rate_key: str | None = None
    # Workflows (model/workflows.py). ``after``: the tasks it runs after;
    # ``blocked``: PENDING but not to start until they have ended (no wake-up
    # is published for it until then).
    after: tuple[int, ...] = ()
    run_anyway: bool = False
    blocked: bool = False
    workflow_id: int | None = None
    step: str | None = None
    # While the task is unfinished, no other task of its type and owner has this key (model/uniqueness.py).
    unique_key: str | None = None
    # Crash attribution. ``alone``: the current (or last) attempt runs alone on
    # its worker, so if that worker dies, this task is what killed it.
    # ``suspect``: a worker died while this task ran beside others, so it may
    # be the killer; it runs alone until an attempt ends with a verdict.
    alone: bool = False
    suspect: bool = False
    # The last progress its handler reported (model/progress.py), of the
    # running attempt or, between attempts and once final, of the last one;
    # ``progress_at``: when it was stored. A claim starts the next attempt
    # without; COMPLETED is 1.0. Each report is a transition of its own
    # (``report_progress``), so readers, the cache and the change feed order
    # it by version like any other.
    progress: float | None = None
    progress_message: str | None = None
    progress_at: datetime | None = None
    callback_url: str | None = None  # model/webhooks.py: told when the task ends
    # The trace of the submit that created it, as the tracer serialised it
    # (ports/tracing.py): every attempt's spans join it, so retries and
    # re-dispatches keep it. Opaque to the core; None when it was not traced.
    trace_context: str | None = None
    # Given at submit, never changed (model/tags.py): labels a listing filters
    # on, and a JSON object the service keeps and returns but never reads.
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = {}
    # Its last attempts, oldest first (model/attempts.py): each transition that
    # starts or ends one records it, so a task page can draw its timeline.
    attempt_log: tuple[Attempt, ...] = ()

    @classmethod
    def created(cls, task_id: int, new: NewTask) -> Task:
        return cls(
            id=task_id,
            type=new.type,
            input=new.input,
            status=TaskStatus.PENDING,
            max_attempts=new.max_attempts,
            created_at=new.created_at,
            updated_at=new.created_at,
            run_at=new.run_at,
            owner=new.owner,
            priority=new.priority,
            queue=new.queue,
            concurrency_key=new.concurrency_key,
            rate_key=new.rate_key,
            after=new.after,
            run_anyway=new.run_anyway,
            blocked=bool(new.after),
            workflow_id=new.workflow_id,
            step=new.step,
            unique_key=new.unique_key,
            callback_url=new.callback_url,
            trace_context=new.trace_context,
            tags=new.tags,
            metadata=new.metadata,
        )

    def visible_to(self, owner: str | None) -> bool:
        """``owner=None`` sees every task (auth off, or an admin)."""
        return owner is None or self.owner == owner

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    def same_attempt(self, other: Task) -> bool:
        """Both are this task running in one attempt (the same start and
        count), at any versions: what changed between them is only progress,
        the one transition a running attempt makes before its verdict."""
        return (
            self.id == other.id
            and self.status is TaskStatus.PROCESSING
            and other.status is TaskStatus.PROCESSING
            and (self.started_at, self.attempts) == (other.started_at, other.attempts)
        )

    def is_due(self, now: datetime) -> bool:
        """PENDING, not waiting for other tasks, and its time has come."""
        return self.status is TaskStatus.PENDING and not self.blocked and self.run_at <= now

    def _require(self, action: str, *allowed: TaskStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(
                f"cannot {action} task {self.id}: it is {self.status.value}",
                task_id=self.id,
                status=self.status,
            )

    def _next(self, now: datetime, **changes: Any) -> Task:
        return msgspec.structs.replace(self, version=self.version + 1, updated_at=now, **changes)

    def may_claim(self, *, alone: bool) -> bool:
        """A suspect task only starts on a worker that runs nothing else beside
        it; a blocked one not before the tasks it runs after have ended."""
        return self.status is TaskStatus.PENDING and not self.blocked and (alone or not self.suspect)

    def claim(self, now: datetime, lease: timedelta, *, alone: bool = False) -> Task:
        """Start an attempt, ``alone`` if the worker runs nothing else meanwhile.
        The attempt is counted here, at the claim, so a handler that kills its
        worker still uses up its attempts (``release`` gives it back when the
        worker ran other tasks too). It starts with no progress: the last
        attempt's described work that is being done over."""
        self._require("claim", TaskStatus.PENDING)
        if not self.may_claim(alone=alone):
            why = "it waits for other tasks" if self.blocked else "it runs alone since its worker died"
            raise InvalidTransition(
                f"cannot claim task {self.id}: {why}", task_id=self.id, status=self.status
            )
        return self._next(
            now,
            status=TaskStatus.PROCESSING,
            attempts=self.attempts + 1,
            lease_until=now + lease,
            started_at=now,
            alone=alone,
            attempt_log=started(self.attempt_log, self.attempts + 1, now),
            **_NO_PROGRESS,
        )

    def report_progress(self, progress: Progress, now: datetime) -> Task:
        """Store how far the running attempt got. A transition like the others
        (version + 1), so it is written only by the attempt that holds the
        task, and cached and announced in order with its states."""
        self._require("report progress of", TaskStatus.PROCESSING)
        return self._next(now, **_reported(progress, now))

    def complete(self, result: Any, now: datetime, *, report: Progress | None = None) -> Task:
        """Its progress becomes 1.0, whatever the handler last said (it is
        done), with the last report's message. ``report``: one the attempt
        made after its last progress write, which goes with the verdict
        rather than in a write of its own."""
        self._require("complete", TaskStatus.PROCESSING)
        message = report.message if report is not None else self.progress_message
        return self._next(
            now,
            status=TaskStatus.COMPLETED,
            result=result,
            error=None,
            lease_until=None,
            finished_at=now,
            suspect=False,
            attempt_log=ended(self.attempt_log, AttemptOutcome.COMPLETED, now),
            **_reported(Progress(1.0, message), now),
        )

    def fail(
        self, error: str, now: datetime, retry_in: timedelta | None, *, report: Progress | None = None
    ) -> Task:
        """End the current attempt with an error: back to PENDING at
        ``now + retry_in`` while attempts remain, otherwise FAILED. Its
        progress stays where the attempt got (``report``, as ``complete``)."""
        self._require("fail", TaskStatus.PROCESSING)
        reported = _reported(report, now) if report is not None else {}
        reported["attempt_log"] = ended(self.attempt_log, AttemptOutcome.FAILED, now, error)
        # Its worker lived to tell the verdict: whatever killed a worker before, it was not this run.
        if retry_in is not None and self.attempts < self.max_attempts:
            return self._next(
                now,
                status=TaskStatus.PENDING,
                error=error,
                lease_until=None,
                run_at=now + retry_in,
                suspect=False,
                **reported,
            )
        return self._next(
            now,
            status=TaskStatus.FAILED,
            error=error,
            lease_until=None,
            finished_at=now,
            suspect=False,
            **reported,
        )

    def release(self, now: datetime) -> Task:
        """End an attempt whose lease lapsed (its worker died or was cut off),
        without a verdict.

        Which task killed a worker that ran several cannot be told, so an
        attempt that ran beside others is not counted: the task becomes
        ``suspect`` and runs alone next. An attempt that ran alone counts, so
        a task that keeps killing its worker ends FAILED after its attempts
        instead of looping forever, and a task that only ran beside the
        killer is never charged for it.
        """
        self._require("release", TaskStatus.PROCESSING)
        if not self.alone:
            return self._next(
                now,
                status=TaskStatus.PENDING,
                attempts=max(self.attempts - 1, 0),
                error=(
                    f"attempt {self.attempts} abandoned: its lease expired while its worker ran"
                    " other tasks too; not counted, it runs alone next"
                ),
                lease_until=None,
                started_at=None,
                run_at=now,
                suspect=True,
                attempt_log=ended(self.attempt_log, AttemptOutcome.ABANDONED, now, "not counted"),
            )
        error = f"attempt {self.attempts} abandoned: its lease expired"
        log = ended(self.attempt_log, AttemptOutcome.ABANDONED, now)
        if self.attempts < self.max_attempts:
            return self._next(
                now, status=TaskStatus.PENDING, error=error, lease_until=None, run_at=now, attempt_log=log
            )
        return self._next(
            now, status=TaskStatus.FAILED, error=error, lease_until=None, finished_at=now, attempt_log=log
        )

    def unclaim(self, now: datetime) -> Task:
        """Undo a claim whose handler was interrupted by a graceful shutdown:
        the attempt is not counted, since the handler did not fail."""
        self._require("unclaim", TaskStatus.PROCESSING)
        return self._next(
            now,
            status=TaskStatus.PENDING,
            attempts=max(self.attempts - 1, 0),
            lease_until=None,
            started_at=None,
            run_at=now,
            attempt_log=ended(self.attempt_log, AttemptOutcome.HANDED_BACK, now, "not counted"),
        )

    def defer(self, until: datetime, now: datetime) -> Task:
        """Not now: a PENDING task over its rate limit waits for the start time
        reserved for it (``run_at`` pushed; nothing else changes)."""
        self._require("defer", TaskStatus.PENDING)
        return self._next(now, run_at=max(until, self.run_at))

    def cancel(self, now: datetime, reason: str | None = None) -> Task:
        """``reason`` is kept as its ``error`` (a workflow step cancelled
        because a step it runs after failed names that step)."""
        self._require("cancel", *CANCELLABLE)
        changes: dict[str, Any] = {"error": reason} if reason is not None else {}
        if self.status is TaskStatus.PROCESSING:
            changes["attempt_log"] = ended(self.attempt_log, AttemptOutcome.CANCELLED, now)
        return self._next(
            now, status=TaskStatus.CANCELLED, lease_until=None, finished_at=now, blocked=False, **changes
        )

    def unblock(self, now: datetime) -> Task:
        """Every task it runs after has ended as it needs: it may start (its
        wake-up goes out with this transition)."""
        self._require("unblock", TaskStatus.PENDING)
        if not self.blocked:
            raise InvalidTransition(f"task {self.id} is not waiting for other tasks", task_id=self.id)
        return self._next(now, blocked=False, run_at=max(self.run_at, now))

    def retry(self, now: datetime) -> Task:
        """Give a FAILED or CANCELLED task a fresh set of attempts (and, as
        with its result, none of the old ones' progress)."""
        self._require("retry", *RETRYABLE)
        return self._next(
            now,
            status=TaskStatus.PENDING,
            attempts=0,
            error=None,
            result=None,
            run_at=now,
            started_at=None,
            finished_at=None,
            blocked=False,
            **_NO_PROGRESS,
        )


_NO_PROGRESS: dict[str, Any] = {"progress": None, "progress_message": None, "progress_at": None}


def _reported(progress: Progress, now: datetime) -> dict[str, Any]:
    return {"progress": progress.fraction, "progress_message": progress.message, "progress_at": now}
