"""Concurrency and rate limits across real worker processes, shown from the rows."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from .conftest import Stack
from .test_queues import ready_worker, wait_all

pytestmark = pytest.mark.integration

APP = "tests.integration.e2e.limited_handlers:registry"


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_a_concurrency_limit_of_2_holds_across_3_worker_processes(stack: Stack) -> None:
    stack.env["TASKCORE_APP"] = APP
    stack.start_api()
    workers = [ready_worker(stack) for _ in range(3)]
    ids = [stack.submit(0.3, type="capped")["id"] for _ in range(24)]
    wait_all(stack, ids, timeout=90)
    spans = stack.sql("SELECT started_at, finished_at FROM tasks WHERE id = ANY(%s)", ids)
    assert most_at_once(spans) == 2
    assert stack.sql("SELECT max(attempts) FROM tasks") == [(1,)]  # held back, never failed for it
    for worker in workers:
        assert worker.stop() == 0, worker.output()
    took = (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds()
    print(f"\n24 tasks of 0.3 s, at most 2 at once over 3 workers: {took:.1f} s (at best 3.6 s)")


def test_a_rate_limit_of_20_per_second_over_200_tasks_holds_within_10_percent(stack: Stack) -> None:
    stack.env["TASKCORE_APP"] = APP
    stack.start_api()
    workers = [ready_worker(stack) for _ in range(2)]
    ids = [stack.submit(n, type="metered")["id"] for n in range(200)]
    wait_all(stack, ids, timeout=120)
    rows = stack.sql("SELECT created_at, run_at, started_at FROM tasks WHERE id = ANY(%s)", ids)
    # A deferred task's run_at is the start reserved for it; one claimed at once got the start then.
    reserved = sorted(
        (run_at if run_at > created else started).timestamp() for created, run_at, started in rows
    )
    starts = sorted(started_at.timestamp() for _, _, started_at in rows)
    # The limiter: each start reserved at least 50 ms after the one before (exactly 50 ms
    # while a backlog waits), and no task started before the start reserved for it.
    gaps = [later - earlier for earlier, later in itertools.pairwise(reserved)]
    assert min(gaps) >= 0.049, f"two starts reserved {min(gaps) * 1000:.1f} ms apart"
    assert all(started >= run_at for _, run_at, started in rows)
    # What happened: never faster than the limit, within 10 % (a busy machine can only
    # make it slower); the delay buckets add up to a tenth of a delay, and a busy
    # machine may hand a few late wake-ups out at once.
    span = starts[-1] - starts[0]
    rate = (len(starts) - 1) / span
    busiest = max(sum(1 for other in starts if start <= other < start + 1) for start in starts)
    assert rate <= 22, f"200 starts took {span:.2f} s: {rate:.1f} a second"
    assert busiest <= 24, f"{busiest} starts within one second"
    done = "SELECT count(*) FROM tasks WHERE id = ANY(%s) AND status = 'COMPLETED'"
    assert stack.sql(done, ids) == [(200,)]
    for worker in workers:
        assert worker.stop() == 0, worker.output()
    print(
        f"\n200 starts reserved over {reserved[-1] - reserved[0]:.2f} s (ideal 9.95 s), started over"
        f" {span:.2f} s ({rate:.1f}/s); at most {busiest} in any one second"
    )
