"""What a handler may learn of the attempt it runs: ``TaskContext``.

A handler takes its input as its first parameter. It may declare one more,
annotated ``TaskContext``, to receive the task's id, attempt and queue and
the results of the tasks it runs after (a workflow's earlier steps); the
input type alone is still what a submit is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from taskcore.model.task import Task


class TaskContext:
    """Read-only facts about the running attempt."""

    def __init__(self, task: Task, results: Mapping[str, Any] | None = None) -> None:
        self._task = task
        self._results = MappingProxyType(dict(results or {}))

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
