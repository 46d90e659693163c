"""The port of concurrency limits that wakes the tasks they parked.

The claim itself applies the limits (``AttemptStore.claim``); a task over its
concurrency limit is parked PENDING, its wake-up dropped. This is the other
half: when a running task of a limited key ends, one slot is free, and the
next parked task of that key is made ready for a wake-up.
"""

from __future__ import annotations

from typing import Protocol

from taskcore.model.task import Task


class ConcurrencySlots(Protocol):
    async def wake(self, task_type: str, key: str) -> list[Task]:
        """The next task parked by the concurrency limit of ``key`` (highest
        priority, then oldest), no longer parked and marked as needing a
        wake-up, which the caller publishes (if that fails, the sweeper
        does). Serialised with the claims of that key, so a task parked
        while a slot frees is never left parked. ``[]`` if none waits."""
        ...
