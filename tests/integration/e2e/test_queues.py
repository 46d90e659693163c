"""Named queues and pausing them, through real API and worker processes."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime

import httpx
import pytest

from .conftest import TASKCORE, Process, Stack

pytestmark = pytest.mark.integration

APP = "tests.integration.e2e.queued_handlers:registry"


def ready_worker(stack: Stack, *args: str) -> Process:
    worker = stack.start("worker", *args, name="worker")
    deadline = time.monotonic() + 30
    while "worker consuming" not in worker.output():
        assert worker.popen.poll() is None, worker.output()
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    return worker


def wait_all(stack: Stack, ids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM tasks WHERE id = ANY(%s) AND status = 'COMPLETED'"
    while stack.sql(query, ids)[0][0] < len(ids):
        assert time.monotonic() < deadline, stack.sql("SELECT status::text, count(*) FROM tasks GROUP BY 1")
        time.sleep(0.1)


def test_a_worker_started_for_some_queues_takes_only_their_tasks(stack: Stack) -> None:
    stack.env["TASKCORE_APP"] = APP
    stack.start_api()
    mailer = ready_worker(stack, "--queue", "emails")
    others = ready_worker(stack, "--queue", "default")
    mails = [stack.submit(0.01, type="mail")["id"] for _ in range(20)]
    plains = [stack.submit(0.01, type="plain")["id"] for _ in range(20)]
    wait_all(stack, mails + plains)
    ran_by = dict(stack.sql("SELECT id, result::int FROM tasks"))
    assert {ran_by[i] for i in mails} == {mailer.popen.pid}
    assert {ran_by[i] for i in plains} == {others.popen.pid}
    assert stack.get(mails[0])["queue"] == "emails"
    listed = httpx.get(f"{stack.base_url}/tasks", params={"queue": "emails", "limit": 100}, timeout=10).json()
    assert sorted(task["id"] for task in listed["items"]) == mails


def test_a_worker_for_a_queue_no_handler_uses_refuses_to_start(stack: Stack) -> None:
    stack.env["TASKCORE_APP"] = APP
    worker = stack.start("worker", "--queue", "emails", "--queue", "reportz", name="worker")
    assert worker.popen.wait(timeout=30) == 1
    assert "reportz" in worker.output()


def test_a_pause_stops_starts_on_every_worker_within_2_s_and_resume_drains_the_backlog(stack: Stack) -> None:
    stack.env["TASKCORE_APP"] = APP
    stack.start_api()
    workers = [ready_worker(stack), ready_worker(stack)]
    client = httpx.Client(base_url=stack.base_url, timeout=10)
    # A steady flow of short mails keeps both workers busy when the pause comes.
    before = [stack.submit(0.3, type="mail")["id"] for _ in range(40)]
    wait_until_running = time.monotonic() + 30
    while stack.sql("SELECT count(*) FROM tasks WHERE status = 'COMPLETED'")[0][0] < 5:
        assert time.monotonic() < wait_until_running
        time.sleep(0.05)
    paused = client.post("/queues/emails/pause")
    paused_at = datetime.now(UTC)
    assert (paused.status_code, paused.json()["paused"]) == (200, True)
    during = [stack.submit(0.01, type="mail")["id"] for _ in range(20)]  # still accepted: 201
    plain = stack.submit(0.01, type="plain")["id"]
    time.sleep(4)
    late = stack.sql("SELECT count(*) FROM tasks WHERE queue = 'emails' AND started_at > %s", paused_at)
    assert late == [(0,)], "an emails task started after the pause"
    assert stack.sql("SELECT status::text FROM tasks WHERE id = %s", plain) == [("COMPLETED",)]
    assert stack.sql("SELECT count(*) FROM tasks WHERE queue = 'emails' AND status = 'PROCESSING'") == [(0,)]
    waiting = stack.sql("SELECT count(*) FROM tasks WHERE queue = 'emails' AND status = 'PENDING'")[0][0]
    assert waiting >= len(during)
    view = {q["name"]: q for q in client.get("/queues").json()["items"]}["emails"]
    assert (view["paused"], view["waiting"], view["running"]) == (True, waiting, 0)
    assert view["ready"] == waiting  # every wake-up waits at the broker: none was dropped

    # Resumed with the CLI, as an operator would: the backlog runs, woken by its own messages.
    resumed = subprocess.run(
        [TASKCORE, "queue", "resume", "emails"], env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "emails: running" in resumed.stdout
    resumed_at = time.monotonic()
    wait_all(stack, before + during, timeout=30)
    drained_s = time.monotonic() - resumed_at
    for worker in workers:
        assert worker.stop() == 0, worker.output()
    client.close()
    print(f"\n{waiting} tasks waited out the pause; the backlog drained {drained_s:.1f} s after the resume")
