"""A circuit breaker, so a dead cache costs microseconds instead of a timeout.

Every status read tries the cache first; while Redis is down each of those
reads would otherwise wait out the socket timeout before the database answers.
After ``failures`` consecutive failures the breaker opens and calls are refused
on the spot. Once ``reset_s`` has passed it lets a single trial call through
(half-open): success closes it, failure opens it for another ``reset_s``.

A trial whose outcome is never reported (its caller was cancelled) only holds
the door shut for another ``reset_s``; the breaker cannot get stuck half-open.

Pure Python with an injectable clock, so its timing is tested without sleeping.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from taskcore.errors import ConfigurationError


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(
        self,
        failures: int = 3,
        reset_s: float = 5.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ConfigurationError("breaker failures must be at least 1", failures=failures)
        if reset_s < 0:
            raise ConfigurationError("breaker reset_s must not be negative", reset_s=reset_s)
        self._threshold = failures
        self._reset_s = reset_s
        self._monotonic = monotonic
        self._failures = 0
        self._retry_at: float | None = None  # None while closed
        self._trial_pending = False

    @property
    def state(self) -> BreakerState:
        if self._retry_at is None:
            return BreakerState.CLOSED
        if self._trial_pending:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def retry_in_s(self) -> float:
        """Seconds until the next trial call is let through; 0 when calls pass now."""
        if self._retry_at is None:
            return 0.0
        return max(0.0, self._retry_at - self._monotonic())

    def allow(self) -> bool:
        """Whether a call may go to the network now.

        ``True`` while open means "you are the trial": the caller must report
        the outcome with ``record_success`` or ``record_failure``.
        """
        if self._retry_at is None:
            return True
        now = self._monotonic()
        if now < self._retry_at:
            return False
        self._retry_at = now + self._reset_s
        self._trial_pending = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._retry_at = None
        self._trial_pending = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold or self._trial_pending:
            self._retry_at = self._monotonic() + self._reset_s
            self._trial_pending = False
