"""Real ``taskcore api`` and ``taskcore worker`` processes against the real services.

Each test gets its own database (a migrated copy), queue name and cache prefix,
so processes from different tests or runs never see each other's work.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from tests.integration.databases import Databases

TASKCORE = str(Path(sys.executable).with_name("taskcore"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.popen.wait(timeout=timeout)


@dataclass
class Stack:
    """Environment and process control for one test's system."""

    env: dict[str, str]
    tmp: Path
    database_url: str
    redis_url: str
    queue_name: str
    cache_prefix: str
    processes: list[Process] = field(default_factory=list)
    base_url: str = ""

    def start(self, *args: str, name: str, **env: str) -> Process:
        log = self.tmp / f"{name}-{len(self.processes)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [TASKCORE, *args], env={**self.env, **env}, stdout=out, stderr=subprocess.STDOUT
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_api(self, port: int | None = None, **env: str) -> Process:
        """An API on ``port`` (a new free one when not given); returns once it answers."""
        port = port or free_port()
        process = self.start("api", "--host", "127.0.0.1", "--port", str(port), name="api", **env)
        self.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.popen.poll() is None, process.output()
            try:
                if httpx.get(f"{self.base_url}/health/live", timeout=1).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, process.output()
            time.sleep(0.1)

    def start_worker(self, **env: str) -> Process:
        return self.start("worker", name="worker", **env)

    def submit(self, input_data: Any = "hello", **extra: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.base_url}/tasks/", json={"input_data": input_data, **extra}, timeout=10)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def get(self, task_id: int) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/tasks/{task_id}", timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_final(self, task_id: int, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (task := self.get(task_id))["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
            assert time.monotonic() < deadline, f"task {task_id} still {task['status']}"
            time.sleep(0.05)
        return task

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            cursor = connection.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait()


def delete_queues(amqp_url: str, prefix: str) -> None:
    """Remove every queue this test declared (work, dead-letter, delay buckets)."""
    listed = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name"],
        capture_output=True,
        text=True,
        check=False,
    )
    for name in listed.stdout.split():
        if name.startswith(prefix):
            subprocess.run(["rabbitmqctl", "delete_queue", name], capture_output=True, check=False)


def delete_keys(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def stack(
    databases: Databases,
    redis_server_url: str,
    amqp_server_url: str,
    run_id: str,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    database = await databases.create()
    unique = f"{run_id}.{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "TASKCORE_DATABASE_URL": database.url,
        "TASKCORE_REDIS_URL": redis_server_url,
        "TASKCORE_AMQP_URL": amqp_server_url,
        "TASKCORE_QUEUE_NAME": unique,
        "TASKCORE_CACHE_PREFIX": f"{unique}:",
        "TASKCORE_REVERSE_DELAY_S": "0.2",
        "TASKCORE_MIGRATE_ON_START": "false",
        "TASKCORE_LOG_LEVEL": "INFO",
        "TASKCORE_SHUTDOWN_GRACE_S": "10",
        "TASKCORE_AUTH": "none",
        # Tests read the logs as text, and start several workers on one host.
        "TASKCORE_LOG_FORMAT": "console",
        "TASKCORE_WORKER_METRICS_PORT": "0",
    }
    stack = Stack(
        env=env,
        tmp=tmp_path,
        database_url=database.url,
        redis_url=redis_server_url,
        queue_name=unique,
        cache_prefix=f"{unique}:",
    )
    try:
        yield stack
    finally:
        stack.stop_all()
        delete_queues(amqp_server_url, unique)
        delete_keys(redis_server_url, f"{unique}:")
