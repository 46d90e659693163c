"""The port of retention: deleting finished tasks past their time.

Its own port rather than one more method on ``RecoveryStore``: the sweeper
is not its only caller (``taskcore prune`` deletes on demand), and what it may
delete will grow conditions of its own (workflows).
"""

from __future__ import annotations

from typing import Protocol

from taskcore.model.retention import PruneCutoffs


class TaskPruner(Protocol):
    async def prune(self, cutoffs: PruneCutoffs, limit: int) -> int:
        """Delete up to ``limit`` finished tasks that ``cutoffs`` lets go
        (``PruneCutoffs.expired``) and return how many went: type by type,
        the type whose finished tasks go back furthest first, each type's
        oldest ``finished_at`` first (roughly the oldest overall, at a cost
        that does not grow with the tasks a type keeps).

        Never an unfinished task, and never one an idempotency key still names:
        the task stays until the sweeper forgets the key
        (``RecoveryStore.forget_idempotency_keys``), so a client retrying a
        submit within ``idempotency_ttl_s`` gets its task back instead of
        running it a second time. A row another transaction holds (a retry
        turning a FAILED task PENDING again, another pruner's batch) is skipped,
        not waited for: concurrent prunes neither block each other nor delete
        a task twice.

        Workflows (issue #15) will add one condition here: a finished task
        that a running workflow still needs (a parent whose result its
        children will read) is kept until the workflow ends. It belongs in
        this one place (the ``prune_tasks`` statement and ``MemoryPruner.prune``),
        so the sweepers and ``taskcore prune`` both respect it.
        """
        ...
