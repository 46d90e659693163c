"""What a handler may learn of the attempt it runs: ``TaskContext``.

A handler takes its input as its first parameter. It may declare one more,
annotated ``TaskContext``, to receive the task's id, attempt and queue and
the results of the tasks it runs after (a workflow's earlier steps), and to
report its progress; the input type alone is still what a submit is checked
against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from taskcore.model.progress import Progress
from taskcore.model.task import Task


class TaskContext:
    """Facts about the running attempt, and the way to report its progress."""

    def __init__(
        self,
        task: Task,
        results: Mapping[str, Any] | None = None,
        report: Callable[[Progress], None] | None = None,
    ) -> None:
        """``report`` takes the checked reports (the worker's attempt); without
        it, as in a handler called directly by a test, they go nowhere."""
        self._task = task
        self._results = MappingProxyType(dict(results or {}))
        self._report = report

    @property
    def task_id(self) -> int:
        return self._task.id

    @property
    def type(self) -> str:
        return self._task.type

    @property
    def attempt(self) -> int:
        """1 for the first attempt, counting as the task's ``attempts`` does."""
        return self._task.attempts

    @property
    def max_attempts(self) -> int:
        return self._task.max_attempts

    @property
    def queue(self) -> str:
        return self._task.queue

    @property
    def workflow_id(self) -> int | None:
        return self._task.workflow_id

    @property
    def step(self) -> str | None:
        return self._task.step

    @property
    def results(self) -> Mapping[str, Any]:
        """The results of the tasks it runs after that COMPLETED, by step name
        (or task id, as a string, for one that is not a named step). One that
        FAILED or was CANCELLED is missing (only a step that runs anyway
        starts after such a one)."""
        return self._results

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far this attempt got: ``fraction`` from 0 to 1 and a short
        ``message`` (cut to 200 characters). Call it as often as you like, from
        an async handler or a sync one in its thread: it never blocks, and the
        worker stores the latest report at most every
        ``TASKCORE_PROGRESS_INTERVAL_S`` (0.5 s), the last one with the
        verdict. ``GET /tasks/{id}`` shows it, event streams send it as
        ``progress`` events. ``TypeError``/``ValueError`` for a fraction that
        is not a number from 0 to 1."""
        report = Progress.reported(fraction, message)
        if self._report is not None:
            self._report(report)
