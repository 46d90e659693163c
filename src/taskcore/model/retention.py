"""Retention: how long a finished task is kept before it is deleted.

A queue table that is never pruned grows without end (86 million rows a day
at 1,000 tasks a second) until the bloat slows every claim. So a finished
task (COMPLETED, FAILED, CANCELLED) is kept for its type's retention, counted
from ``finished_at``, and then deleted; an unfinished task is never deleted,
whatever its age. ``PruneCutoffs`` is that rule at one moment: for each type,
the time before which its finished tasks may go.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import msgspec

from taskcore.model.task import Task

KEEP_FOREVER = 0.0
"""A retention of 0 seconds keeps finished tasks for good (as ``TASKCORE_RETENTION_S=0``)."""


class PruneCutoffs(msgspec.Struct, frozen=True, kw_only=True):
    """The finished tasks that may be deleted now: those that finished before
    their type's cutoff. ``by_type`` names the types with a retention of their
    own (a handler's ``retention_s``); every other type, one no handler knows
    included, goes by ``default``. A cutoff of ``None`` keeps the tasks forever."""

    default: datetime | None
    by_type: dict[str, datetime | None] = msgspec.field(default_factory=dict)

    @classmethod
    def at(
        cls, now: datetime, *, default_s: float, by_type_s: Mapping[str, float] | None = None
    ) -> PruneCutoffs:
        """The cutoffs ``now`` for retentions in seconds (0 keeps forever)."""

        def before(seconds: float) -> datetime | None:
            return None if seconds == KEEP_FOREVER else now - timedelta(seconds=seconds)

        by_type = {name: before(seconds) for name, seconds in (by_type_s or {}).items()}
        return cls(default=before(default_s), by_type=by_type)

    def cutoff(self, task_type: str) -> datetime | None:
        return self.by_type.get(task_type, self.default)  # a kept type's None included

    def expired(self, task: Task) -> bool:
        """Finished, and before its type's cutoff. (Whether something else still
        needs it, an idempotency key, is the pruner's to check.)"""
        cutoff = self.cutoff(task.type)
        return task.finished_at is not None and cutoff is not None and task.finished_at < cutoff

    @property
    def keeps_all(self) -> bool:
        """Every type is kept: nothing to delete, nothing to ask the database."""
        return self.default is None and all(cutoff is None for cutoff in self.by_type.values())

    @property
    def overridden(self) -> dict[str, datetime]:
        """The types with a cutoff of their own."""
        return {name: cutoff for name, cutoff in self.by_type.items() if cutoff is not None}

    @property
    def kept(self) -> list[str]:
        """The types kept forever whatever ``default`` says."""
        return sorted(name for name, cutoff in self.by_type.items() if cutoff is None)
