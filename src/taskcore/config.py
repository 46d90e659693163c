"""Knobs of the core's behaviour, passed in by whoever composes the system.

The core never reads the environment: the entrypoints turn ``TASKCORE_*``
variables into this struct.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

import msgspec


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential backoff with full jitter: attempt n waits a random time in
    [0.5, 1] x min(cap, base * 2**(n-1)), so retries of a burst spread out."""

    base_s: float = 1.0
    cap_s: float = 300.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> timedelta:
        ceiling = min(self.cap_s, self.base_s * 2 ** max(attempt - 1, 0))
        return timedelta(seconds=ceiling * (0.5 + rand() / 2))


class CoreConfig(msgspec.Struct, frozen=True, kw_only=True):
    lease_s: float = 30.0
    task_timeout_s: float = 300.0
    finished_ttl_s: float = 60.0
    active_ttl_s: float = 60.0
    retry: RetryPolicy = RetryPolicy()
    sweep_interval_s: float = 5.0
    redispatch_grace_s: float = 10.0
    redispatch_overdue_s: float = 600.0
    lost_wake_up_grace_s: float = 15.0  # a census deficit must last this long before tasks are woken again
    idempotency_ttl_s: float = 86_400.0
    retention_s: float = 604_800.0  # finished tasks are deleted this long after they finished; 0 keeps them
    # A running task's progress is written at most once per this (work/progress.py).
    progress_interval_s: float = 0.5

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_s)

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(seconds=self.idempotency_ttl_s)
