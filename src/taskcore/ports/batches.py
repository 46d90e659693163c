"""The port of bulk submit: many new tasks stored in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from taskcore.model.task import NewTask
from taskcore.model.uniqueness import Added


class TaskBatches(Protocol):
    async def add_many(self, news: Sequence[NewTask]) -> list[Added]:
        """Store every task of ``news`` in one transaction, or none (the
        first error is raised): each as ``TaskStore.add_unique`` stores one,
        in the order given. As few statements as their kinds allow (plain
        tasks share one INSERT)."""
        ...
