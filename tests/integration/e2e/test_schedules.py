"""Periodic schedules across real worker processes: one task per fire time,
however many workers run, and while one of them is SIGKILLed."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from datetime import timedelta

import pytest

from .conftest import TASKCORE, Stack
from .test_queues import ready_worker, wait_all

pytestmark = pytest.mark.integration

APP = "tests.integration.e2e.scheduled_handlers:registry"
FIRINGS = "SELECT fire_at, task_id FROM schedule_firings WHERE schedule = 'every-second' ORDER BY fire_at"


def cli(stack: Stack, *args: str) -> str:
    done = subprocess.run([TASKCORE, *args], env=stack.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def firings_until(stack: Stack, count: int, timeout: float) -> list[tuple[object, ...]]:
    deadline = time.monotonic() + timeout
    while len(found := stack.sql(FIRINGS)) < count:
        assert time.monotonic() < deadline, f"{len(found)} firings of {count}"
        time.sleep(0.2)
    return found


def test_three_workers_make_one_task_per_second_for_30_s_through_a_sigkill(stack: Stack) -> None:
    stack.env["TASKCORE_APP"] = APP
    workers = [ready_worker(stack) for _ in range(3)]
    firings_until(stack, 10, timeout=30)
    killed = workers[0]
    killed.stop(signal.SIGKILL)  # wherever it is: maybe mid-firing, holding the schedule's row
    firings_until(stack, 31, timeout=60)
    # Stop the schedule (from the command line), then let the two left finish what it made.
    paused = cli(stack, "schedule", "pause", "every-second")
    assert "every-second: tick, every 1 s, paused, system" in paused
    firings = stack.sql(FIRINGS)
    times = [fire_at for fire_at, _ in firings]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]  # type: ignore[operator]
    assert set(gaps) == {timedelta(seconds=1)}, f"not one firing a second: {sorted(set(gaps))}"
    task_ids = [task_id for _, task_id in firings]
    assert None not in task_ids
    assert len(set(task_ids)) == len(task_ids)
    made = [task_id for (task_id,) in stack.sql("SELECT id FROM tasks WHERE type = 'tick' ORDER BY id")]
    assert sorted(task_ids) == made  # every task of the type is one firing's, and every firing made one
    wait_all(stack, made, timeout=60)
    for worker in workers[1:]:
        assert worker.stop() == 0, worker.output()
    assert f"last {times[-1].isoformat()}" in cli(stack, "schedule", "list")  # type: ignore[union-attr]
    ran_by = {pid for (pid,) in stack.sql("SELECT DISTINCT result::int FROM tasks WHERE type = 'tick'")}
    print(
        f"\n{len(firings)} firings, one a second, {times[0]:%H:%M:%S} to {times[-1]:%H:%M:%S};"
        f" worker {killed.popen.pid} SIGKILLed after 10; run by {len(ran_by)} workers"
    )
