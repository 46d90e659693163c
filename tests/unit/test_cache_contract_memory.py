"""The cache contract on ``MemoryCache``, and the Redis adapter's circuit breaker.

Both run without I/O: the memory cache and the breaker take a fake clock.
"""

from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryCache
from taskcore.adapters.redis.breaker import BreakerState, CircuitBreaker
from taskcore.errors import ConfigurationError
from tests.contracts.cache import CacheContract, Elapse


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestMemoryCache(CacheContract):
    @pytest.fixture
    def cache(self, clock: FakeClock) -> MemoryCache:
        return MemoryCache(monotonic=clock)

    @pytest.fixture
    def elapse(self, clock: FakeClock) -> Elapse:
        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        return advance


def open_breaker(clock: FakeClock, failures: int = 3, reset_s: float = 5.0) -> CircuitBreaker:
    breaker = CircuitBreaker(failures, reset_s, monotonic=clock)
    for _ in range(failures):
        assert breaker.allow()
        breaker.record_failure()
    return breaker


class TestCircuitBreaker:
    def test_starts_closed(self, clock: FakeClock) -> None:
        breaker = CircuitBreaker(3, 5.0, monotonic=clock)

        assert breaker.state is BreakerState.CLOSED
        assert breaker.allow()
        assert breaker.retry_in_s == 0.0

    def test_opens_after_consecutive_failures(self, clock: FakeClock) -> None:
        breaker = CircuitBreaker(3, 5.0, monotonic=clock)
        breaker.record_failure()
        breaker.record_failure()
        assert breaker.allow()

        breaker.record_failure()

        assert breaker.state is BreakerState.OPEN
        assert not breaker.allow()
        assert breaker.retry_in_s == pytest.approx(5.0)

    def test_a_success_resets_the_failure_count(self, clock: FakeClock) -> None:
        breaker = CircuitBreaker(3, 5.0, monotonic=clock)
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
        breaker.record_failure()
        breaker.record_failure()

        assert breaker.state is BreakerState.CLOSED
        assert breaker.allow()

    def test_refuses_until_reset_then_lets_one_trial_through(self, clock: FakeClock) -> None:
        breaker = open_breaker(clock)
        clock.advance(4.99)
        assert not breaker.allow()

        clock.advance(0.01)

        assert breaker.allow()
        assert breaker.state is BreakerState.HALF_OPEN
        assert not breaker.allow(), "only one trial at a time"

    def test_a_successful_trial_closes(self, clock: FakeClock) -> None:
        breaker = open_breaker(clock)
        clock.advance(5.0)
        assert breaker.allow()

        breaker.record_success()

        assert breaker.state is BreakerState.CLOSED
        assert all(breaker.allow() for _ in range(10))

    def test_a_failed_trial_reopens_for_another_period(self, clock: FakeClock) -> None:
        breaker = open_breaker(clock)
        clock.advance(5.0)
        assert breaker.allow()

        breaker.record_failure()

        assert breaker.state is BreakerState.OPEN
        clock.advance(4.9)
        assert not breaker.allow()
        clock.advance(0.1)
        assert breaker.allow()

    def test_a_trial_that_never_reports_does_not_wedge_it(self, clock: FakeClock) -> None:
        breaker = open_breaker(clock)
        clock.advance(5.0)
        assert breaker.allow()  # the trial's caller is cancelled and never reports

        clock.advance(5.0)

        assert breaker.allow()

    def test_a_failure_of_a_threshold_of_one_opens_at_once(self, clock: FakeClock) -> None:
        breaker = CircuitBreaker(1, 0.5, monotonic=clock)

        breaker.record_failure()

        assert not breaker.allow()

    @pytest.mark.parametrize(("failures", "reset_s"), [(0, 5.0), (3, -1.0)])
    def test_rejects_unusable_settings(self, failures: int, reset_s: float) -> None:
        with pytest.raises(ConfigurationError):
            CircuitBreaker(failures, reset_s)
