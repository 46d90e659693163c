"""Tracing nothing, by default: ``NoTracing`` implements the tracing ports.

It is what a ``TaskService``, ``WorkflowService`` or ``TaskProcessor`` gets
unless it is given a tracer, and what the container picks when tracing is
off or OpenTelemetry is not installed: one shared span object that records
nothing and carries no context, so a task stores ``trace_context=None`` and
nothing is imported or allocated per task.
"""

from __future__ import annotations

from types import TracebackType

from taskcore.model.task import Task


class _NoSpan:
    """Every span kind at once; ``with`` returns itself."""

    __slots__ = ()

    trace_context: str | None = None

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def stored(self, task: Task, *, created: bool) -> None:
        pass

    def claimed(self, task: Task) -> None:
        pass

    def failed(self, error: str, exception: BaseException | None = None) -> None:
        pass

    def settled(self, outcome: str) -> None:
        pass


_NO_SPAN = _NoSpan()


class NoTracing:
    """Traces nothing."""

    __slots__ = ()

    def submitting(self, task_type: str | None, *, count: int = 1) -> _NoSpan:
        return _NO_SPAN

    def claiming(self) -> _NoSpan:
        return _NO_SPAN

    def running(self, task: Task) -> _NoSpan:
        return _NO_SPAN
