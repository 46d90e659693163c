"""``taskcore dev`` as a user runs it: a real process, real HTTP, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

T = TypeVar("T")

TASKCORE = str(Path(sys.executable).with_name("taskcore"))

# Real processes on a machine that may be busy: every wait is a poll for a
# positive signal, bounded by a deadline far beyond what it normally takes.
DEADLINE_S = 60.0
HTTP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(check: Callable[[], T | None], what: str, within: float = DEADLINE_S) -> T:
    """``check()``'s first result that is not ``None``, asked every 50 ms until ``within``."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {within:g} s"
        time.sleep(0.05)


def wait_until_serving(base: str, proc: subprocess.Popen[bytes], errors: Path) -> None:
    def serving() -> bool | None:
        assert proc.poll() is None, f"taskcore dev exited: {errors.read_text()}"
        try:
            httpx.get(f"{base}/docs/openapi.json", timeout=HTTP_TIMEOUT_S)
        except httpx.TransportError:
            return None
        return True

    poll(serving, "taskcore dev serving")


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, "TASKCORE_REVERSE_DELAY_S": "0.3", "TASKCORE_LOG_LEVEL": "WARNING"}
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as stderr:  # a file, not a pipe nobody reads, which could fill and block it
        proc = subprocess.Popen(
            [TASKCORE, "dev", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, proc, errors)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=DEADLINE_S)


def test_the_readme_client_example_runs_against_it(
    dev_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """The first example of the README's "Python client", as printed, against ``taskcore dev``."""
    base, _ = dev_server
    section = (Path(__file__).parents[2] / "README.md").read_text().split("## Python client", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "client_example.py"
    script.write_text(example)
    env = {key: value for key, value in os.environ.items() if key != "TASKCORE_TOKEN"}
    result = subprocess.run(
        [sys.executable, str(script)],
        env={**env, "TASKCORE_URL": base},
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    streamed = lines.index("COMPLETED") + 1  # the states it saw: the first may be PENDING or PROCESSING
    assert set(lines[:streamed]) <= {"PENDING", "PROCESSING", "COMPLETED"}
    assert lines[streamed:] == ["COMPLETED olleh", lines[-1]]
    assert lines[-1].startswith("409 ")


def test_reference_flow_over_real_http(dev_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, _ = dev_server
    created = httpx.post(f"{base}/tasks/", json={"input_data": "hello"}, timeout=HTTP_TIMEOUT_S)
    assert created.status_code == 201
    body = created.json()
    assert (body["status"], body["result"]) == ("PENDING", None)

    def completed() -> dict[str, object] | None:
        task: dict[str, object] = httpx.get(f"{base}/tasks/{body['id']}", timeout=HTTP_TIMEOUT_S).json()
        return task if task["status"] == "COMPLETED" else None

    task = poll(completed, "the task completing")
    assert task["result"] == "olleh"
    assert httpx.get(f"{base}/docs", timeout=HTTP_TIMEOUT_S).status_code == 200


def test_sigterm_exits_cleanly(dev_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, proc = dev_server
    created = httpx.post(f"{base}/tasks/", json={"input_data": "in flight"}, timeout=HTTP_TIMEOUT_S)
    assert created.status_code == 201
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=DEADLINE_S) == 0


def test_a_bad_setting_stops_start_up_naming_it() -> None:
    result = subprocess.run(
        [TASKCORE, "dev"],
        env={**os.environ, "TASKCORE_WORKER_CONCURRENCY": "lots"},
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert result.returncode != 0
    assert "TASKCORE_WORKER_CONCURRENCY" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["dev", "api", "worker"])
def test_help(command: str) -> None:
    result = subprocess.run(
        [TASKCORE, command, "--help"], capture_output=True, text=True, timeout=DEADLINE_S, check=True
    )
    assert "--app" in result.stdout


@pytest.mark.parametrize("command", ["api", "worker"])
def test_networked_processes_refuse_to_start_without_service_urls(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKCORE_")}
    env["TASKCORE_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    result = subprocess.run(
        [TASKCORE, command], env=env, capture_output=True, text=True, timeout=DEADLINE_S, check=False
    )
    assert result.returncode != 0
    assert "TASKCORE_DATABASE_URL, TASKCORE_AMQP_URL not set" in result.stderr
    assert "TASKCORE_REDIS_URL" not in result.stderr.split("not set")[0]


def test_start_up_retries_each_service_then_gives_up_naming_it() -> None:
    closed = free_port()  # nothing listens there
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKCORE_")},
        "TASKCORE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/x",
        "TASKCORE_REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        "TASKCORE_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{closed}/",
        "TASKCORE_STARTUP_ATTEMPTS": "3",
        "TASKCORE_STARTUP_BACKOFF_S": "0.1",
    }
    result = subprocess.run(
        [TASKCORE, "worker"], env=env, capture_output=True, text=True, timeout=DEADLINE_S, check=False
    )
    assert result.returncode == 1
    assert result.stderr.count("waiting for postgres (attempt") == 2
    assert "postgres unavailable after 3 attempts" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["worker", "api"])
def test_sigterm_while_waiting_for_a_service_at_start_up_exits_0_at_once(
    command: str, tmp_path: Path
) -> None:
    """Tried as a new user would: a worker still retrying RabbitMQ was killed by
    SIGTERM (exit -15), and the API kept retrying. Both now stop start-up."""
    closed = free_port()  # nothing listens there: start-up keeps retrying
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKCORE_")},
        "TASKCORE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/x",
        "TASKCORE_REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        "TASKCORE_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{closed}/",
        "TASKCORE_AUTH": "none",
        "TASKCORE_STARTUP_ATTEMPTS": "1000",
        "TASKCORE_STARTUP_BACKOFF_S": "30",
    }
    args = [TASKCORE, command] + (["--port", str(free_port())] if command == "api" else [])
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as stderr:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        poll(lambda: "waiting for postgres" in errors.read_text() or None, f"{command} retrying")
        proc.send_signal(signal.SIGTERM)
        # Well inside the 30 s backoff it was sleeping: the stop cut it short.
        assert proc.wait(timeout=20) == 0, errors.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = errors.read_text()
    assert "before it started: exiting" in log
    assert "Traceback" not in log
