"""What the core tells a tracer about a task's way through, as spans.

Three spans per task: the submit (where the task is stored), and for each
attempt the claim and the run. The submit span's context is serialised by
the tracer (``SubmitSpan.trace_context``) and stored with the task, in its
row, so every attempt's spans join the submit's trace however long after and
wherever they run: retries and re-dispatches read the same row. The core
keeps the string opaque; an adapter (``taskcore.adapters.otel``) turns it
into OpenTelemetry spans, and ``taskcore.tracing.NoTracing`` does nothing.

Like the telemetry ports the calls are synchronous and must neither block
nor raise. The run span is the current one while the handler runs, in the
handler's context (``contextvars``), so a handler's own spans are its
children.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from taskcore.model.task import Task


class SubmitSpan(Protocol):
    @property
    def trace_context(self) -> str | None:
        """What to store with the tasks this submit creates (``None``: nothing to carry)."""
        ...

    def stored(self, task: Task, *, created: bool) -> None:
        """This submit stored ``task`` (``created``), or answered with it (a
        unique key's holder, an Idempotency-Key's replay)."""
        ...


class ClaimSpan(Protocol):
    def claimed(self, task: Task) -> None:
        """The claim got ``task`` (PROCESSING, or PENDING again when its rate
        limit deferred it); a claim that gets nothing makes no span."""
        ...


class RunSpan(Protocol):
    def failed(self, error: str, exception: BaseException | None = None) -> None:
        """The attempt failed: the handler raised (``exception``) or timed
        out, or its input or result was refused."""
        ...

    def settled(self, outcome: str) -> None:
        """How the attempt ended (an ``Outcome``'s value)."""
        ...


class SubmitTracing(Protocol):
    def submitting(self, task_type: str | None, *, count: int = 1) -> AbstractContextManager[SubmitSpan]:
        """A span around one submit (``count`` > 1: a batch; ``task_type``
        ``None`` when its tasks are of several types). An exception leaving
        it marks the span failed."""
        ...


class WorkTracing(Protocol):
    def claiming(self) -> AbstractContextManager[ClaimSpan]:
        """A span around one claim, in the claimed task's trace."""
        ...

    def running(self, task: Task) -> AbstractContextManager[RunSpan]:
        """A span around one attempt of the claimed ``task``, in its trace and
        current while the handler runs. An exception leaving it (a backing
        service failed) marks the span failed; a cancellation does not."""
        ...
