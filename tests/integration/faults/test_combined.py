"""The acceptance run: many tasks through several faults at once, nothing lost.

600 ``reverse`` tasks are submitted at a steady pace while both workers are
SIGKILLed and restarted, the API's broker connection is cut for seconds (it
goes through a TCP proxy this test controls; the workers reach RabbitMQ
directly), and one worker is finally drained with SIGTERM. Every POST must be
accepted and every task must end COMPLETED with its input reversed.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from typing import Any

import httpx
import pytest

from tests.integration.e2e.conftest import Process, Stack
from tests.integration.faults.proxies import TcpProxy
from tests.integration.faults.test_worker_crashes import (
    read_all,
    sigkill,
    start_ready_worker,
    status_counts,
    wait_completed,
    wait_until,
)

pytestmark = [pytest.mark.integration]


TASKS = 600
PACE_PER_S = 60  # submissions per second: the run lasts about 10 s, long enough for every fault


class Submitter(threading.Thread):
    """POSTs the tasks at a steady pace and records every answer."""

    def __init__(self, base_url: str, inputs: list[str]) -> None:
        super().__init__(daemon=True)
        self._base_url = base_url
        self._inputs = inputs
        self.answers: list[tuple[int, float, dict[str, Any] | str]] = []  # status, seconds, body
        self.error: BaseException | None = None

    @property
    def count(self) -> int:
        return len(self.answers)

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self._base_url, timeout=30) as client:
                started = time.monotonic()
                for i, input_data in enumerate(self._inputs):
                    time.sleep(max(0.0, started + i / PACE_PER_S - time.monotonic()))
                    sent = time.monotonic()
                    response = client.post("/tasks/", json={"type": "reverse", "input_data": input_data})
                    body = response.json() if response.status_code == 201 else response.text
                    self.answers.append((response.status_code, time.monotonic() - sent, body))
        except BaseException as exc:
            self.error = exc

    def wait_for(self, count: int, timeout: float = 60) -> None:
        wait_until(lambda: self.count >= count or not self.is_alive(), timeout, lambda: f"{self.count} sent")
        assert self.error is None, repr(self.error)
        assert self.count >= count, f"the submitter stopped after {self.count}"


def test_600_tasks_survive_worker_kills_a_broker_outage_and_a_drain(fault_stack: Stack) -> None:
    stack = fault_stack
    worker_env = {"TASKCORE_REVERSE_DELAY_S": "0.2"}  # a few tasks in flight whenever a fault strikes
    proxy = TcpProxy(stack.env["TASKCORE_AMQP_URL"]).start()
    try:
        api = stack.start_api(TASKCORE_AMQP_URL=proxy.url)
        workers = [start_ready_worker(stack, **worker_env), start_ready_worker(stack, **worker_env)]
        inputs = [f"acceptance {i:03d}" for i in range(TASKS)]
        submitter = Submitter(stack.base_url, inputs)
        submitter.start()
        faults: list[str] = []

        def busy() -> int:
            """Tasks PROCESSING right now, once there are any: faults strike work in flight."""
            wait_until(lambda: status_counts(stack)["PROCESSING"] > 0, 15, lambda: "nothing in flight")
            return status_counts(stack)["PROCESSING"]

        def kill_and_restart(index: int) -> None:
            caught = busy()
            assert sigkill(workers[index]) == -signal.SIGKILL
            faults.append(f"SIGKILL worker {index} ({caught} tasks PROCESSING in all)")
            workers[index] = start_ready_worker(stack, **worker_env)

        submitter.wait_for(100)
        kill_and_restart(0)
        submitter.wait_for(200)
        kill_and_restart(1)

        submitter.wait_for(260)
        proxy.cut()  # the API's broker connection is reset and refused
        cut_at, cut_count = time.monotonic(), submitter.count
        # For 3.5 s, and at least until a submit has met the outage.
        wait_until(
            lambda: time.monotonic() - cut_at >= 3.5 and "stored but not published" in api.output(),
            30,
            lambda: f"no submit met the broker outage ({submitter.count - cut_count} POSTs since the cut)",
        )
        proxy.restore()
        outage = (submitter.count - cut_count, time.monotonic() - cut_at)
        faults.append(f"broker outage {outage[1]:.1f} s ({outage[0]} POSTs)")

        submitter.wait_for(TASKS)
        submitter.join(timeout=30)
        # The final drain: SIGTERM one worker while work is still in flight.
        busy()
        drained: Process = workers.pop(0)
        assert drained.stop(signal.SIGTERM) == 0, drained.output()
        draining = re.search(r"draining (\d+) running task", drained.output())
        faults.append(f"SIGTERM drain of a worker running {draining[1] if draining else 0} task(s): exit 0")

        recovery = wait_completed(stack, TASKS, workers[0], timeout=60)
        assert workers[0].stop(signal.SIGTERM) == 0, workers[0].output()
    finally:
        proxy.close()

    # Every POST was accepted, outage or not.
    assert [status for status, _, _ in submitter.answers] == [201] * TASKS, [
        a for a in submitter.answers if a[0] != 201
    ]
    ids = [int(body["id"]) for _, _, body in submitter.answers]  # type: ignore[index]
    input_of = dict(zip(ids, inputs, strict=True))
    unpublished = len(re.findall(r"stored but not published", api.output()))
    assert unpublished > 0, "the outage did not reach the submit path"

    # The source of truth: every task COMPLETED once, with its input reversed, no lease left.
    rows = stack.sql("SELECT id, status::text, result, error, lease_until FROM tasks ORDER BY id")
    assert rows == [(i, "COMPLETED", input_of[i][::-1], None, None) for i in sorted(ids)]
    assert status_counts(stack) == {"COMPLETED": TASKS}
    # And what clients read converges on it within seconds.
    expected = [("COMPLETED", input_of[i][::-1]) for i in ids]
    wait_until(
        lambda: [(v["status"], v["result"]) for v in read_all(stack, ids)] == expected,
        20,
        lambda: "GET /tasks/{id} still disagrees with the database",
    )

    attempts = [a for (a,) in stack.sql("SELECT attempts FROM tasks")]
    slowest_post = max(seconds for _, seconds, _ in submitter.answers)
    print(
        f"\nfaults: {faults}; POSTs answered 201: {TASKS}, slowest {slowest_post:.2f} s;"
        f" submitted but not published: {unpublished}; tasks with more than one attempt:"
        f" {sum(a > 1 for a in attempts)}; all COMPLETED {recovery:.1f} s after the drain"
    )
