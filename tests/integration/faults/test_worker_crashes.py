"""Workers that die: SIGKILL mid-run, a handler that kills its worker, SIGTERM drains.

Real ``taskcore api`` and ``taskcore worker`` processes on the real services
(``fault_stack``: 3 s leases, sweeps every 0.5 s). The database is checked
directly for what the API could hide (rows left PROCESSING), and the handlers'
run files tell how often each task really ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.e2e.conftest import Process, Stack
from tests.integration.faults.handlers import runs

pytestmark = [pytest.mark.integration]

FINAL = ("COMPLETED", "FAILED", "CANCELLED")


# -- helpers ------------------------------------------------------------------


def _each_in_threads(
    stack: Stack, call: Callable[[httpx.Client, Any], Any], items: Iterable[Any]
) -> list[Any]:
    """``call(client, item)`` for every item on 4 threads, one keep-alive client each."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def run(item: Any) -> Any:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=stack.base_url, timeout=30)
            clients.append(client)
        return call(client, item)

    try:
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(run, items))
    finally:
        for client in clients:
            client.close()


def submit_all(stack: Stack, bodies: Iterable[dict[str, Any]]) -> list[int]:
    def post(client: httpx.Client, body: dict[str, Any]) -> int:
        response = client.post("/tasks/", json=body)
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    return _each_in_threads(stack, post, bodies)


def read_all(stack: Stack, ids: Iterable[int]) -> list[dict[str, Any]]:
    """Every task as a client sees it (``GET /tasks/{id}``, cache first)."""

    def get(client: httpx.Client, task_id: int) -> dict[str, Any]:
        response = client.get(f"/tasks/{task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return _each_in_threads(stack, get, ids)


def status_counts(stack: Stack) -> Counter[str]:
    return Counter(dict(stack.sql("SELECT status::text, count(*) FROM tasks GROUP BY 1")))


def wait_until(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> float:
    """Poll ``condition`` until true; the seconds it took. ``what`` explains a timeout."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"after {timeout} s: {what()}"
        time.sleep(0.05)
    return time.monotonic() - started


def start_ready_worker(stack: Stack, **env: str) -> Process:
    """A worker that is consuming (its start-up takes a second or two on a busy machine)."""
    worker = stack.start_worker(**env)
    wait_until(
        lambda: worker.popen.poll() is not None or "worker consuming" in worker.output(),
        30,
        worker.output,
    )
    assert worker.popen.poll() is None, worker.output()
    return worker


def wait_completed(stack: Stack, count: int, worker: Process, timeout: float = 60) -> float:
    return wait_until(
        lambda: status_counts(stack)["COMPLETED"] >= count,
        timeout,
        lambda: f"{status_counts(stack)}\n{worker.output()[-3000:]}",
    )


def wait_sessions_gone(stack: Stack, application_name: str) -> None:
    """Until PostgreSQL has no session of that name (a killed process's statements are done)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    wait_until(lambda: stack.sql(query, application_name) == [(0,)], 10, lambda: "its sessions linger")


def sigkill(worker: Process) -> int:
    worker.popen.kill()
    return worker.popen.wait(timeout=10)


def outcomes(worker: Process) -> str:
    match = re.search(r"worker stopped: (\{.*\})", worker.output())
    assert match, worker.output()
    return match.group(1)


class HoldingRelay:
    """A TCP relay, on a thread with its own event loop, that can stop forwarding.

    While held, what a client sends is kept back: to the client the server has
    gone silent (no reset, no answer). Nothing held is ever forwarded later.
    """

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Future[None]] = set()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def hold(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def close(self) -> None:
        async def shut() -> None:
            self._server.close()
            for writer in self._links:
                writer.transport.abort()
            for pump in self._pumps:
                pump.cancel()
            await asyncio.gather(*self._pumps, return_exceptions=True)

        self._call(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, upstream_writer}
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            pump = asyncio.ensure_future(self._pump(source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        sink.transport.abort()


def relay_redis(stack: Stack) -> tuple[HoldingRelay, str]:
    """A relay to the test's Redis, and the Redis URL that goes through it."""
    match = re.match(r"redis://([^:/]+):(\d+)", stack.redis_url)
    assert match, stack.redis_url
    relay = HoldingRelay(match[1], int(match[2]))
    return relay, stack.redis_url.replace(match.group(0), f"redis://127.0.0.1:{relay.port}")


# -- 1. SIGKILL, again and again ----------------------------------------------


def test_repeated_sigkill_loses_nothing_and_reruns_only_interrupted_tasks(
    fault_stack: Stack, fault_dir: Path
) -> None:
    stack = fault_stack
    stack.start_api()
    keys = [f"key-{i:04d}" for i in range(1000)]
    ids = submit_all(stack, ({"type": "record", "input_data": key} for key in keys))
    key_of = dict(zip(ids, keys, strict=True))

    # Kill the worker whenever another fifth of the work is done, restart one each time.
    interrupted: Counter[int] = Counter()  # task id -> kills that caught it mid-run
    charged: Counter[int] = Counter()  # task id -> kills that caught it running alone
    kills: list[tuple[datetime, set[int]]] = []
    started = datetime.now(UTC)
    # Named database sessions (libpq's PGAPPNAME), to see when a dead worker's are gone.
    session = f"{stack.queue_name}-worker-0"
    worker = start_ready_worker(stack, PGAPPNAME=session)
    for n, threshold in enumerate((200, 400, 600, 800), start=1):
        wait_completed(stack, threshold, worker)
        assert sigkill(worker) == -signal.SIGKILL
        killed_at = datetime.now(UTC)
        # PostgreSQL still runs what the dead worker had sent (a claim, a verdict).
        wait_sessions_gone(stack, session)
        # The dead worker's claims: still PROCESSING, nobody renews them any more.
        # (Claims of an earlier dead worker may still wait for the sweeper: not this kill's.)
        rows = stack.sql(
            "SELECT id, alone FROM tasks WHERE status = 'PROCESSING' AND started_at >= %s", started
        )
        in_flight = {task_id for task_id, _ in rows}
        kills.append((killed_at, in_flight))
        interrupted.update(in_flight)
        charged.update(task_id for task_id, alone in rows if alone)
        started = datetime.now(UTC)
        session = f"{stack.queue_name}-worker-{n}"
        worker = start_ready_worker(stack, PGAPPNAME=session)

    wait_completed(stack, 1000, worker, timeout=90)
    assert worker.stop(signal.SIGTERM) == 0, worker.output()

    # The source of truth: every task COMPLETED with its own key reversed, no claim left behind.
    rows = stack.sql("SELECT id, status::text, result, error, attempts, lease_until FROM tasks ORDER BY id")
    assert [row[:4] for row in rows] == [(i, "COMPLETED", key_of[i][::-1], None) for i in sorted(ids)]
    assert all(lease_until is None for *_, lease_until in rows)
    assert status_counts(stack) == {"COMPLETED": 1000}
    # What clients read agrees, at the latest once the redelivered messages of tasks
    # completed just before a kill have refreshed their cache entries.
    stale_at_first = sum(v["status"] != "COMPLETED" for v in read_all(stack, ids))
    expected = [("COMPLETED", key_of[i][::-1], None) for i in ids]
    wait_until(
        lambda: [(v["status"], v["result"], v["error"]) for v in read_all(stack, ids)] == expected,
        20,
        lambda: "GET /tasks/{id} still disagrees with the database",
    )

    # Exact accounting (crash attribution): a kill cost an attempt only to a task it
    # caught running alone; one it caught beside others ran again, alone, uncharged.
    attempts = {task_id: n for task_id, _, _, _, n, _ in rows}
    executions = {task_id: len(runs(fault_dir, key_of[task_id])) for task_id in ids}
    assert all(n >= 1 for n in executions.values()), "a task completed without its handler running"
    for task_id in ids:
        assert attempts[task_id] == 1 + charged.get(task_id, 0), task_id
        # Each run needs a claim; a kill may land before the interrupted run started.
        assert 1 <= executions[task_id] <= 1 + interrupted.get(task_id, 0), task_id
    duplicates = sorted(task_id for task_id, n in executions.items() if n > 1)
    assert set(duplicates) <= set(interrupted), "a task ran twice without a kill interrupting it"

    recoveries = []
    for killed_at, in_flight in kills:
        if in_flight:
            [(last_finish,)] = stack.sql(
                "SELECT max(finished_at) FROM tasks WHERE id = ANY(%s)", list(in_flight)
            )
            recoveries.append(round((last_finish - killed_at).total_seconds(), 1))
    print(
        f"\nkills: {len(kills)}, tasks caught mid-run per kill: {[len(k[1]) for k in kills]},"
        f" ran more than once: {len(duplicates)} of 1000, stale GETs right after the run: {stale_at_first},"
        f" seconds from kill to its last interrupted task COMPLETED: {recoveries}"
    )


# -- 1b. the window between the verdict's commit and the cache write ---------------


def test_a_verdict_stored_just_before_a_kill_reaches_the_cache(fault_stack: Stack, fault_dir: Path) -> None:
    """A worker killed between committing a verdict and writing the cache left the
    claim's PROCESSING entry in Redis for the active TTL (60 s), and the redelivered
    message was dropped without refreshing it: GET said PROCESSING for a minute."""
    stack = fault_stack
    relay, relayed = relay_redis(stack)
    try:
        stack.start_api()
        # The first worker reaches Redis through the relay, with a deadline long
        # enough that its cache write is still waiting when it is killed.
        first = start_ready_worker(stack, TASKCORE_REDIS_URL=relayed, TASKCORE_REDIS_TIMEOUT_S="30")
        task_id = stack.submit({"key": "window", "seconds": 1.5}, type="sleep_async")["id"]
        wait_until(lambda: stack.get(task_id)["status"] == "PROCESSING", 15, first.output)
        relay.hold()
        row = "SELECT status::text, result, attempts FROM tasks WHERE id = %s"
        wait_until(lambda: stack.sql(row, task_id)[0][0] == "COMPLETED", 15, first.output)
        assert sigkill(first) == -signal.SIGKILL  # verdict committed, cache write pending, message unacked
    finally:
        relay.close()
    assert stack.sql(row, task_id) == [("COMPLETED", "slept window", 1)]
    assert runs(fault_dir, "window") == [first.popen.pid]

    # The broker hands the unacked message to the next worker, which finds the task finished.
    second = start_ready_worker(stack)
    wait_until(  # 30 s: generous, and well short of the stale entry's 60 s TTL that would hide the bug
        lambda: stack.get(task_id)["status"] == "COMPLETED",
        30,
        lambda: (
            f"GET /tasks/{task_id} still says {stack.get(task_id)['status']} while the database"
            f" says COMPLETED\n{second.output()[-3000:]}"
        ),
    )
    view = stack.get(task_id)
    assert second.stop(signal.SIGTERM) == 0
    assert "'skipped': 1" in outcomes(second)  # the redelivery came and was dropped
    assert (view["status"], view["result"], view["attempts"]) == ("COMPLETED", "slept window", 1)
    assert len(runs(fault_dir, "window")) == 1


# -- 2. a handler that kills its worker, every time --------------------------------


def supervise(
    stack: Stack, task_id: int, on_death: Callable[[], None], worker: Process | None = None
) -> tuple[list[int], Process]:
    """A small supervisor: run a worker (or go on with ``worker``), and whenever it
    dies call ``on_death`` and start another, until ``task_id`` is final. The exit
    codes and the last worker."""
    exits: list[int] = []
    worker = worker or stack.start_worker()
    started = time.monotonic()
    while (status := stack.sql("SELECT status::text FROM tasks WHERE id = %s", task_id)[0][0]) not in FINAL:
        assert time.monotonic() - started < 90, f"task {task_id} still {status} after exits {exits}"
        if (code := worker.popen.poll()) is not None:
            exits.append(code)
            assert len(exits) <= 5, f"the worker keeps dying: {exits}\n{worker.output()}"
            on_death()
            worker = stack.start_worker()
        time.sleep(0.1)
    return exits, worker


def test_a_task_that_kills_its_worker_fails_after_max_attempts_and_others_complete(
    fault_stack: Stack, fault_dir: Path
) -> None:
    stack = fault_stack
    stack.start_api()
    poison = stack.submit("poison", type="crash")["id"]
    calm: dict[int, str] = {}

    def submit_calm() -> None:
        # Work submitted while the poison task cycles still gets done.
        key = f"calm-{len(calm)}"
        calm[stack.submit(key, type="record")["id"]] = key

    started = time.monotonic()
    exits, worker = supervise(stack, poison, submit_calm)
    poisoned_for = time.monotonic() - started

    for task_id, key in calm.items():
        done = stack.wait_final(task_id, timeout=30)
        assert (done["status"], done["result"], done["error"]) == ("COMPLETED", key[::-1], None), done
        assert 1 <= len(runs(fault_dir, key)) <= done["attempts"]
    assert worker.stop(signal.SIGTERM) == 0, worker.output()

    failed = stack.get(poison)
    assert (failed["status"], failed["attempts"], failed["result"]) == ("FAILED", 3, None), failed
    assert failed["error"] == "attempt 3 abandoned: its lease expired"
    # The first death is not charged (it ran as one of many slots, so it may not have
    # been the killer); then it runs alone, and each death alone is one attempt.
    assert exits == [1, 1, 1, 1]  # os._exit(1) once per run, and nothing else killed a worker
    pids = runs(fault_dir, "poison")
    assert len(pids) == 4, pids  # one suspect run and three attempts alone,
    assert len(set(pids)) == 4, pids  # in four different processes
    assert stack.sql("SELECT count(*) FROM tasks WHERE status = 'PROCESSING'") == [(0,)]
    listed = httpx.get(f"{stack.base_url}/tasks", params={"status": "FAILED"}, timeout=10).json()
    assert [t["id"] for t in listed["items"]] == [poison]
    print(
        f"\nworker exits: {exits}, poison task FAILED after {poisoned_for:.1f} s;"
        f" calm tasks submitted meanwhile: {len(calm)}, all COMPLETED"
    )


def test_a_task_beside_a_worker_killer_is_not_failed_for_it(fault_stack: Stack, fault_dir: Path) -> None:
    """Crash attribution: the worker that dies while running both charges neither;
    each runs alone next, so the healthy task completes and only the task that
    kills its worker alone spends its attempts."""
    stack = fault_stack
    stack.start_api()
    # A healthy task that takes a while, running when the poison task arrives.
    healthy = stack.submit({"key": "healthy", "seconds": 8}, type="sleep_async")["id"]
    poison: list[int] = []

    def lapse_healthy_now() -> None:
        # Its worker is dead, so its lease will lapse anyway: make that happen first, so the
        # next worker's sweeper hands it out again before the poison task (leases are
        # released oldest first). Both then run side by side, as on the worker that died.
        lapse = (
            "UPDATE tasks SET lease_until = now() - interval '1 hour' WHERE id = %s AND status = 'PROCESSING'"
        )
        stack.sql(lapse, healthy)

    def submit_poison_when_healthy_runs() -> None:
        wait_until(lambda: runs(fault_dir, "healthy") != [], 20, lambda: "the healthy task never started")
        poison.append(stack.submit("poison", type="crash")["id"])

    thread = threading.Thread(target=submit_poison_when_healthy_runs)
    thread.start()
    try:
        exits, worker = supervise(stack, healthy, lapse_healthy_now)
    finally:
        thread.join()
    more, worker = supervise(stack, poison[0], lambda: None, worker)  # it runs alone after the healthy one
    exits += more
    assert stack.get(poison[0])["status"] == "FAILED"
    assert worker.stop(signal.SIGTERM) == 0, worker.output()

    assert exits == [1, 1, 1, 1]  # beside the healthy task (not charged), then three times alone
    assert len(runs(fault_dir, "poison")) == 4
    done = stack.get(healthy)
    healthy_runs = len(runs(fault_dir, "healthy"))
    assert (done["status"], done["result"]) == ("COMPLETED", "slept healthy"), (
        f"the healthy task ended {done['status']} ({done['error']}) after {done['attempts']} attempts"
        f" and {healthy_runs} runs, none of which failed"
    )


# -- 3. SIGTERM drains ---------------------------------------------------------


def test_sigterm_drains_hands_back_the_rest_and_exits_0(fault_stack: Stack, fault_dir: Path) -> None:
    stack = fault_stack
    stack.start_api()
    worker = start_ready_worker(stack, TASKCORE_SHUTDOWN_GRACE_S="1", TASKCORE_WORKER_CONCURRENCY="16")
    naps = {f"nap-{i:02d}": 1.0 + (i % 5) * 0.25 for i in range(20)}  # 1 to 2 s each
    ids = submit_all(
        stack, ({"type": "sleep_async", "input_data": {"key": k, "seconds": s}} for k, s in naps.items())
    )
    key_of = dict(zip(ids, naps, strict=True))
    # Its 16 slots are busy (the other 4 wait in the queue): stop it.
    wait_until(lambda: status_counts(stack)["PROCESSING"] == 16, 20, worker.output)
    signalled = time.monotonic()
    assert worker.stop(signal.SIGTERM) == 0, worker.output()
    drain_s = time.monotonic() - signalled

    # Nothing is stuck: what did not finish in the grace period is PENDING again,
    # its interrupted attempt not counted, and no lease is left.
    rows = stack.sql("SELECT id, status::text, attempts, lease_until FROM tasks ORDER BY id")
    assert {status for _, status, _, _ in rows} <= {"COMPLETED", "PENDING"}, rows
    finished_first = {i for i, status, _, _ in rows if status == "COMPLETED"}
    handed_back = {i for i, status, _, _ in rows if status == "PENDING" and runs(fault_dir, key_of[i])}
    never_started = {i for i, status, _, _ in rows if status == "PENDING"} - handed_back
    assert all(lease is None for *_, lease in rows)
    assert all(attempts == (1 if i in finished_first else 0) for i, _, attempts, _ in rows), rows
    # Its 16 slots were full when it was stopped (on a slow machine a first task may
    # have ended and a 17th started before the signal); the others still wait.
    assert 16 <= len(finished_first) + len(handed_back) <= 17
    assert len(never_started) == 20 - len(finished_first) - len(handed_back)
    # Cancelled at the deadline, a task whose verdict was being stored still completes.
    draining = re.search(r"cancelling (\d+) task", worker.output())
    assert (int(draining[1]) if draining else 0) >= len(handed_back)
    counted = re.search(r"'completed': (\d+)", outcomes(worker))
    assert (int(counted[1]) if counted else 0) == len(finished_first), worker.output()

    second = start_ready_worker(stack)
    rest_s = wait_until(lambda: status_counts(stack)["COMPLETED"] == 20, 30, second.output)
    assert second.stop(signal.SIGTERM) == 0, second.output()

    for view in read_all(stack, ids):
        key = key_of[view["id"]]
        assert (view["status"], view["result"], view["attempts"]) == ("COMPLETED", f"slept {key}", 1), view
        assert len(runs(fault_dir, key)) == (2 if view["id"] in handed_back else 1), key
    assert stack.sql("SELECT count(*) FROM tasks WHERE status <> 'COMPLETED' OR lease_until IS NOT NULL") == [
        (0,)
    ]
    print(
        f"\ndrain took {drain_s:.1f} s (grace 1 s): {len(finished_first)} finished,"
        f" {len(handed_back)} handed back;"
        f" the second worker finished the remaining {20 - len(finished_first)} in {rest_s:.1f} s"
    )


def test_sigterm_with_every_slot_busy_drains_within_the_grace_period(
    fault_stack: Stack, fault_dir: Path
) -> None:
    """A worker waiting for a free slot did not watch for SIGTERM: with every slot
    busy, its drain and grace period started only when a task ended, and the
    message that arrived then was started although the worker was stopping."""
    stack = fault_stack
    stack.start_api()
    worker = start_ready_worker(stack, TASKCORE_SHUTDOWN_GRACE_S="1", TASKCORE_WORKER_CONCURRENCY="2")
    keys = ["busy-0", "busy-1"]
    ids = [stack.submit({"key": key, "seconds": 8}, type="sleep_async")["id"] for key in keys]
    wait_until(lambda: status_counts(stack)["PROCESSING"] == 2, 20, worker.output)
    signalled = time.monotonic()
    assert worker.stop(signal.SIGTERM) == 0, worker.output()
    drain_s = time.monotonic() - signalled

    second = start_ready_worker(stack)
    for task_id, key in zip(ids, keys, strict=True):
        done = stack.wait_final(task_id, timeout=30)
        assert (done["status"], done["result"], done["attempts"]) == ("COMPLETED", f"slept {key}", 1)
    assert second.stop(signal.SIGTERM) == 0
    # The grace period is 1 s: both tasks were handed back then, and ran again on the second worker.
    assert drain_s < 5, f"the worker took {drain_s:.1f} s to stop after SIGTERM (grace 1 s)"
    assert [len(runs(fault_dir, key)) for key in keys] == [2, 2]


def test_a_verdict_stored_when_the_grace_period_ends_is_not_handed_back(
    fault_stack: Stack, fault_dir: Path
) -> None:
    """The drain's deadline cancelled a task whose verdict was being stored: the
    write went on under its shield, but the message was handed back (and
    redelivered) and the completion went uncounted."""
    stack = fault_stack
    relay, relayed = relay_redis(stack)
    try:
        stack.start_api()
        # The worker's cache calls go through the relay and may take 3 s: held, the
        # cache write after the verdict's commit is still waiting when the grace ends.
        worker = start_ready_worker(
            stack, TASKCORE_REDIS_URL=relayed, TASKCORE_REDIS_TIMEOUT_S="3", TASKCORE_SHUTDOWN_GRACE_S="1"
        )
        task_id = stack.submit({"key": "late", "seconds": 0.5}, type="sleep_async")["id"]
        wait_until(lambda: runs(fault_dir, "late") != [], 15, worker.output)
        relay.hold()
        row = "SELECT status::text, result, attempts FROM tasks WHERE id = %s"
        wait_until(lambda: stack.sql(row, task_id)[0][0] == "COMPLETED", 15, worker.output)
        assert worker.stop(signal.SIGTERM) == 0, worker.output()
    finally:
        relay.close()
    assert stack.sql(row, task_id) == [("COMPLETED", "slept late", 1)]

    second = start_ready_worker(stack)
    # A message handed back would wait at the head of the queue: once a task submitted
    # now has completed on this worker, such a redelivery has reached it as well (and the
    # drain at its stop settles and counts whatever it received).
    probe = stack.submit("probe", type="record")["id"]
    assert stack.wait_final(probe)["status"] == "COMPLETED"
    assert second.stop(signal.SIGTERM) == 0
    assert runs(fault_dir, "probe") == [second.popen.pid]
    assert len(runs(fault_dir, "late")) == 1
    assert stack.sql(row, task_id) == [("COMPLETED", "slept late", 1)]
    # The verdict was stored during the drain: it counts as completed, and its
    # message is acked, not handed back for another worker.
    assert "'completed': 1" in outcomes(worker), worker.output()
    assert "skipped" not in outcomes(second), "the stored task's message was handed back and redelivered"
