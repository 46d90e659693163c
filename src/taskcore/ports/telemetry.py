"""What the core reports about its work, for metrics: one small Protocol per caller.

The core calls these where something countable happens (a submit, a claim, a
stored verdict, a dead letter, a sweep); an adapter turns the calls into
metrics (``taskcore.adapters.prometheus``). The calls are synchronous and
must neither block nor raise: they only update numbers in memory.
"""

from __future__ import annotations

from typing import Literal, Protocol

from taskcore.model.queues import DEFAULT_QUEUE

Verdict = Literal["completed", "retried", "failed"]
"""A stored verdict: COMPLETED, PENDING again for a retry, or FAILED for good."""

Recovery = Literal["released", "failed", "redispatched"]
"""What a sweep did: a lapsed task released to PENDING, a lapsed task out of
attempts set FAILED, a PENDING task whose message was published again."""

DeadLetterReason = Literal["invalid_message", "unknown_task"]

CacheRead = Literal["hit", "miss", "error"]

WebhookAttempt = Literal["delivered", "retried", "failed"]
"""How a webhook attempt ended: a 2xx, a failure to try again, a failure that ends the delivery."""


class SubmitTelemetry(Protocol):
    def task_submitted(self, task_type: str, *, queue: str = DEFAULT_QUEUE) -> None:
        """A task was stored (an idempotent replay is not a new one)."""
        ...

    def task_deduplicated(self, task_type: str, *, queue: str = DEFAULT_QUEUE) -> None:
        """A submit got an unfinished task that had its unique key, and stored none."""
        ...


class WorkTelemetry(Protocol):
    def task_claimed(self, task_type: str, waited_s: float, *, queue: str = DEFAULT_QUEUE) -> None:
        """A worker claimed an attempt ``waited_s`` after it was due (its ``run_at``)."""
        ...

    def task_ran(self, task_type: str, seconds: float, *, queue: str = DEFAULT_QUEUE) -> None:
        """A handler ran for ``seconds``, whatever its result."""
        ...

    def task_settled(self, task_type: str, verdict: Verdict, *, queue: str = DEFAULT_QUEUE) -> None:
        """A verdict was stored; a sweep that gives up on a task reports ``failed`` too."""
        ...

    def message_dead_lettered(self, reason: DeadLetterReason) -> None:
        """A message that names no task was moved to the dead-letter queue."""
        ...

    def tasks_in_flight(self, count: int) -> None:
        """How many tasks this worker runs now."""
        ...


class RecoveryTelemetry(Protocol):
    def tasks_recovered(self, action: Recovery, count: int) -> None:
        """A sweep found ``count`` tasks needing ``action``."""
        ...

    def task_settled(self, task_type: str, verdict: Verdict, *, queue: str = DEFAULT_QUEUE) -> None:
        """As ``WorkTelemetry.task_settled``: a sweep that gives up on a task."""
        ...

    def tasks_pruned(self, count: int) -> None:
        """A sweep deleted ``count`` finished tasks past their retention."""
        ...


class CacheTelemetry(Protocol):
    def cache_read(self, result: CacheRead) -> None: ...

    def cache_write_failed(self) -> None: ...


class WebhookTelemetry(Protocol):
    def webhook_attempted(self, outcome: WebhookAttempt) -> None: ...
