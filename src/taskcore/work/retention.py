"""Deleting finished tasks past their retention: by every sweeper, and on demand.

Each type keeps its finished tasks for its handler's ``retention_s``, or
``CoreConfig.retention_s`` (``TASKCORE_RETENTION_S``) when the handler names
none; 0 keeps them forever. A type no handler of this registry knows goes by
the setting, so the tasks of a handler since removed do not stay for good
(which is also why every worker should run the same registry).

Deletion goes in batches, each one statement that skips rows others hold.
A sweep deletes at most ``batches_per_sweep`` of them (10,000 tasks), so a
sweep after a long outage, or the first one after retention is turned on over
a big table, never runs long and never keeps the sweep from its other
duties; the next sweeps carry on. That is 2,000 tasks a second per worker at
the default 5 s interval, above the fastest rate taskcore has been measured
to finish them. ``taskcore prune`` goes on until nothing is left.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from taskcore.config import CoreConfig
from taskcore.handlers.registry import HandlerRegistry
from taskcore.model.retention import KEEP_FOREVER, PruneCutoffs
from taskcore.ports import Clock, TaskPruner

log = logging.getLogger("taskcore.retention")

BATCH = 500
BATCHES_PER_SWEEP = 20


class Retention:
    def __init__(
        self,
        *,
        pruner: TaskPruner,
        registry: HandlerRegistry,
        clock: Clock,
        config: CoreConfig,
        batch: int = BATCH,
        batches_per_sweep: int = BATCHES_PER_SWEEP,
    ) -> None:
        self._pruner = pruner
        self._registry = registry
        self._clock = clock
        self._default_s = config.retention_s
        self._batch = batch
        self._batches_per_sweep = batches_per_sweep

    def cutoffs(self, *, older_than: timedelta | None = None) -> PruneCutoffs:
        """The cutoffs now: each type's retention, or ``older_than`` for every
        type (``taskcore prune --older-than``) except the handlers that keep
        their tasks forever. An operator's one-off age overrides the setting
        and longer retentions alike, but a handler's 0 is its author saying
        these records must stay (an audit trail): that only changes in code."""
        now = self._clock.now()
        if older_than is not None:
            kept = [handler.name for handler in self._registry if handler.retention_s == KEEP_FOREVER]
            return PruneCutoffs(default=now - older_than, by_type=dict.fromkeys(kept))
        own = {
            handler.name: handler.retention_s for handler in self._registry if handler.retention_s is not None
        }
        return PruneCutoffs.at(now, default_s=self._default_s, by_type_s=own)

    def sweep(self) -> AsyncIterator[int]:
        """One sweep's share: each batch's count, at most ``batches_per_sweep``
        batches. Counted as they go, so a batch that fails leaves the caller
        the count of those before it."""
        return self._batches(self.cutoffs(), self._batches_per_sweep)

    def prune(self, *, older_than: timedelta | None = None) -> AsyncIterator[int]:
        """Every task the cutoffs let go now, batch by batch until none is left
        (cutoffs fixed at the start, so tasks finishing meanwhile cannot keep
        it going)."""
        return self._batches(self.cutoffs(older_than=older_than), None)

    async def _batches(self, cutoffs: PruneCutoffs, batches: int | None) -> AsyncIterator[int]:
        if cutoffs.keeps_all:
            return  # every type is kept
        for _ in itertools.count() if batches is None else range(batches):
            pruned = await self._pruner.prune(cutoffs, self._batch)
            yield pruned
            if pruned < self._batch:
                return
