"""Leases: kept by the heartbeat, raced by the sweeper, and no task starved by prefetch.

Real ``taskcore worker`` processes on the real services (``fault_stack``).
Every worker runs a sweeper, so any worker started here also hunts for lapsed
leases; the handlers' run files tell how often each task really ran.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.integration.e2e.conftest import Stack
from tests.integration.faults.handlers import runs
from tests.integration.faults.test_worker_crashes import (
    outcomes,
    read_all,
    start_ready_worker,
    status_counts,
    submit_all,
    wait_completed,
    wait_until,
)

pytestmark = [pytest.mark.integration]

ROW = "SELECT status::text, result, attempts, version, lease_until FROM tasks WHERE id = %s"


# -- 4. the heartbeat keeps a long task's lease ----------------------------------


def test_a_task_longer_than_its_lease_keeps_it_and_runs_once(fault_stack: Stack, fault_dir: Path) -> None:
    stack = fault_stack  # lease 3 s, heartbeat every 1 s, sweeps every 0.5 s
    stack.start_api()
    runner = start_ready_worker(stack)
    long = {
        "async": stack.submit({"key": "long-async", "seconds": 8}, type="sleep_async")["id"],
        # Holds the CPU in a handler thread: the heartbeat must still get the loop.
        "cpu": stack.submit({"key": "long-cpu", "seconds": 8}, type="cpu_hog")["id"],
    }
    wait_until(lambda: status_counts(stack)["PROCESSING"] == 2, 15, runner.output)
    claimed_at = time.monotonic()
    # A second worker, idle, sweeping every 0.5 s for lapsed leases: it must find none.
    sweeper = start_ready_worker(stack)

    # Watch the leases until the tasks end (8 s, well past the first lease's end): never lapsed.
    renewals: dict[str, set[object]] = {name: set() for name in long}
    past_the_first_lease = dict.fromkeys(long, False)  # seen PROCESSING, unlapsed, after it ended
    running = dict(long)
    while running:
        assert time.monotonic() - claimed_at < 60, f"still running after 60 s: {sorted(running)}"
        for name, task_id in list(running.items()):
            [(status, lapsed, lease_until, past)] = stack.sql(
                "SELECT status::text, lease_until < clock_timestamp(), lease_until,"
                " clock_timestamp() > started_at + make_interval(secs => %s) FROM tasks WHERE id = %s",
                float(stack.env["TASKCORE_LEASE_S"]),
                task_id,
            )
            if status == "COMPLETED":
                del running[name]
                continue
            assert (status, lapsed) == ("PROCESSING", False), f"{name}: {status}, lease lapsed: {lapsed}"
            renewals[name].add(lease_until)
            past_the_first_lease[name] |= past
        time.sleep(0.25)
    assert all(len(leases) >= 3 for leases in renewals.values()), renewals  # renewed, not just long
    assert all(past_the_first_lease.values()), past_the_first_lease

    for name, key, result in (
        ("async", "long-async", "slept long-async"),
        ("cpu", "long-cpu", "spun long-cpu"),
    ):
        done = stack.wait_final(long[name], timeout=30)
        assert (done["status"], done["result"], done["attempts"], done["error"]) == (
            "COMPLETED",
            result,
            1,
            None,
        )
        # Claimed once, completed once (version 3): never released, never taken over.
        assert stack.sql(ROW, long[name]) == [("COMPLETED", result, 1, 3, None)]
        assert runs(fault_dir, key) == [runner.popen.pid]
    assert sweeper.stop(signal.SIGTERM) == 0
    assert runner.stop(signal.SIGTERM) == 0
    assert "'completed': 2}" in outcomes(runner)
    assert not re.search(r"[1-9]\d* released", sweeper.output() + runner.output())


# -- 5. the sweeper racing a worker that completes ---------------------------------


def test_sweeper_racing_completions_never_reruns_a_completed_task(
    fault_stack: Stack, fault_dir: Path
) -> None:
    stack = fault_stack
    # Leases of 1 s, tasks of 0.9 to 1.1 s, two workers sweeping every 0.2 s.
    stack.env.update({"TASKCORE_LEASE_S": "1", "TASKCORE_SWEEP_INTERVAL_S": "0.2"})
    stack.start_api()
    workers = [start_ready_worker(stack), start_ready_worker(stack)]
    naps = {f"race-{i:03d}": round(0.9 + (i % 21) * 0.01, 2) for i in range(200)}
    ids = submit_all(
        stack, ({"type": "sleep_async", "input_data": {"key": k, "seconds": s}} for k, s in naps.items())
    )
    key_of = dict(zip(ids, naps, strict=True))

    # Freeze each worker once (SIGSTOP) for about a lease, while it is busy: the
    # leases of its running tasks lapse around the moment those tasks finish, and
    # the other worker's sweeper races it to the row when it wakes up.
    for worker, after, pause_s in ((workers[0], 40, 1.2), (workers[1], 110, 0.9)):
        wait_completed(stack, after, worker)
        os.kill(worker.popen.pid, signal.SIGSTOP)
        try:
            time.sleep(pause_s)
        finally:
            os.kill(worker.popen.pid, signal.SIGCONT)

    # The tasks released from a frozen worker are suspect (it ran them beside others):
    # each runs alone next, one at a time per worker, so the rest takes a while.
    wait_until(lambda: status_counts(stack)["COMPLETED"] == 200, 150, lambda: str(status_counts(stack)))
    for worker in workers:
        assert worker.stop(signal.SIGTERM) == 0, worker.output()

    views = read_all(stack, ids)
    assert [(v["status"], v["result"], v["error"]) for v in views] == [
        ("COMPLETED", f"slept {key_of[v['id']]}", None) for v in views
    ]
    rows = {
        i: (attempts, version)
        for i, attempts, version in stack.sql("SELECT id, attempts, version FROM tasks")
    }
    for task_id, key in key_of.items():
        attempts, version = rows[task_id]
        executions = len(runs(fault_dir, key))
        # Every claim but the last was released by a sweeper, the completion was
        # written once, and each claim ran the handler once: no run came after the
        # completion. (A release charges the attempt only if it ran alone.)
        assert version == 2 * executions + 1, f"{key}: version {version} after {executions} runs"
        assert 1 <= attempts <= executions, f"{key}: {attempts} attempts charged for {executions} runs"
    # Exactly one worker recorded each completion.
    completed = [int(re.search(r"'completed': (\d+)", outcomes(w)).group(1)) for w in workers]  # type: ignore[union-attr]
    assert sum(completed) == 200, completed

    log = "".join(w.output() for w in workers)
    rerun = sorted(n for key in key_of.values() if (n := len(runs(fault_dir, key))) > 1)
    print(
        f"\ncompletions per worker: {completed}; tasks run more than once: {len(rerun)} {rerun};"
        f" verdicts discarded after a takeover: {log.count('result of attempt')};"
        f" runs stopped by a failed heartbeat: {log.count('taken over while attempt')}"
    )


# -- 6. no prefetch starvation -------------------------------------------------------


def test_a_busy_worker_does_not_hold_back_work_an_idle_one_could_do(
    fault_stack: Stack, fault_dir: Path
) -> None:
    stack = fault_stack
    stack.start_api()
    busy = start_ready_worker(stack, TASKCORE_WORKER_CONCURRENCY="2")
    long_ids = [stack.submit({"key": f"long-{i}", "seconds": 7}, type="sleep_async")["id"] for i in range(2)]
    wait_until(lambda: status_counts(stack)["PROCESSING"] == 2, 15, busy.output)
    busy_until = time.monotonic() + 7 - 0.5  # roughly when its slots free up
    idle = start_ready_worker(stack, TASKCORE_WORKER_CONCURRENCY="2")

    submitted = time.monotonic()
    short_id = stack.submit("short", type="record")["id"]
    done = stack.wait_final(short_id, timeout=30)
    waited = time.monotonic() - submitted
    assert (done["status"], done["result"], done["attempts"]) == ("COMPLETED", "trohs", 1)
    assert runs(fault_dir, "short") == [idle.popen.pid]
    assert time.monotonic() < busy_until, "the short task waited for the busy worker"
    assert waited < 5, f"the short task took {waited:.1f} s"
    assert [stack.sql(ROW, i)[0][0] for i in long_ids] == ["PROCESSING", "PROCESSING"]

    for i, task_id in enumerate(long_ids):
        long = stack.wait_final(task_id, timeout=30)
        assert (long["status"], long["result"], long["attempts"]) == ("COMPLETED", f"slept long-{i}", 1)
        assert runs(fault_dir, f"long-{i}") == [busy.popen.pid]
    assert idle.stop(signal.SIGTERM) == 0
    assert busy.stop(signal.SIGTERM) == 0
    print(f"\nthe short task COMPLETED {waited:.2f} s after its submit, on the idle worker")
