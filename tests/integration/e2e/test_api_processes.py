"""``taskcore api --workers N``: several API processes on one port.

Real processes on the real services: both serve (each answers requests, as
its own metrics file shows), the ``/metrics`` of either counts every
process's requests, a process killed outright is replaced while the other
keeps answering, and SIGTERM stops them all with exit status 0.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Process, Stack, free_port

pytestmark = [pytest.mark.integration]

T = TypeVar("T")


def serving_processes(parent: int) -> set[int]:
    """The parent's children that serve (multiprocessing's spawned processes,
    not its resource tracker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def two_serving(api: Process, without: int | None = None) -> set[int] | None:
    """Both serving processes, once there are two (and ``without`` is gone)."""
    found = serving_processes(api.popen.pid)
    return found if len(found) == 2 and without not in found else None


def eventually(check: Callable[[], T | None], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def posts_in(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "taskcore_http_requests_total" and sample.labels.get("method") == "POST"
    )


def posts_counted(base_url: str) -> float:
    return posts_in(httpx.get(f"{base_url}/metrics", timeout=5).text)


def posts_answered_by(metrics_dir: Path, pid: int, scratch: Path) -> float:
    """The POSTs one process counted: its own file of the shared directory, read alone."""
    scratch.mkdir(exist_ok=True)
    for old in scratch.iterdir():
        old.unlink()
    own = metrics_dir / f"counter_{pid}.db"
    if not own.exists():
        return 0.0
    shutil.copy(own, scratch / own.name)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(scratch))
    return posts_in(generate_latest(registry).decode())


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    made = tmp_path / "metrics"
    made.mkdir()
    (made / "counter_1.db").write_bytes(b"stale, from an earlier run")  # removed at start
    return made


@pytest.fixture
def api_processes(stack: Stack, metrics_dir: Path) -> Iterator[tuple[Process, str]]:
    port = free_port()
    api = stack.start(
        "api",
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        name="api",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    base_url = f"http://127.0.0.1:{port}"
    stack.base_url = base_url

    def answering() -> bool:
        assert api.popen.poll() is None, api.output()
        try:
            return httpx.get(f"{base_url}/health/live", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    eventually(answering)
    try:
        yield api, base_url
    finally:
        children = serving_processes(api.popen.pid)
        api.stop()
        for pid in children:  # never leave one behind holding the port
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_two_processes_serve_one_port_and_count_together(
    stack: Stack, api_processes: tuple[Process, str], metrics_dir: Path, tmp_path: Path
) -> None:
    api, base_url = api_processes
    processes = eventually(lambda: two_serving(api))
    stack.start_worker()

    # Concurrent fresh connections: while one process is busy the other accepts.
    # Which one accepts is the kernel's choice; on a loaded machine one process
    # can take a whole round, so rounds go on (bounded) until both have answered.
    sent = 0
    deadline = time.monotonic() + 120
    while True:
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = [
                task["id"] for task in pool.map(lambda n: stack.submit(f"task-{n}"), range(sent, sent + 40))
            ]
        expected = [f"task-{n}"[::-1] for n in range(sent, sent + 40)]
        assert [stack.wait_final(task_id)["result"] for task_id in ids] == expected
        sent += 40
        answered = {pid: posts_answered_by(metrics_dir, pid, tmp_path / "one") for pid in processes}
        if all(count > 0 for count in answered.values()) or time.monotonic() > deadline:
            break

    assert not (metrics_dir / "counter_1.db").exists()  # the stale file went at start
    assert all(count > 0 for count in answered.values()), answered
    assert sum(answered.values()) == sent
    for _ in range(4):  # whichever process answers the scrape counts every process's requests
        assert posts_counted(base_url) == sent

    assert api.stop() == 0
    assert not serving_processes(api.popen.pid)
    assert "Started parent process" in api.output()


def test_a_killed_process_is_replaced_while_the_other_answers(
    stack: Stack, api_processes: tuple[Process, str]
) -> None:
    api, base_url = api_processes
    first = eventually(lambda: two_serving(api))
    victim = min(first)
    os.kill(victim, signal.SIGKILL)

    # Meanwhile every request is answered, by the survivor.
    for n in range(20):
        assert stack.submit(f"during-{n}")["status"] == "PENDING"

    replaced = eventually(lambda: two_serving(api, without=victim))
    # The survivor is normally still there; on a loaded machine uvicorn's
    # supervisor may also restart it if it misses a health check.
    assert victim not in replaced
    assert posts_counted(base_url) == 20  # the dead process's counts are kept
    assert api.stop() == 0
