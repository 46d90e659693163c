"""Private ``redis-server`` processes for tests that must not touch the shared
server: stopping it, flushing its scripts, a three-node Redis Cluster."""

from __future__ import annotations

import functools
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.exceptions import RedisError


def require_binaries() -> None:
    missing = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    if missing:
        message = f"{', '.join(missing)} not on PATH"
        if os.environ.get("TASKCORE_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    """A port whose cluster bus port (``port + 10000``) is free as well."""
    while True:
        port = random.randrange(20_000, 50_000)
        if _port_is_free(port) and _port_is_free(port + 10_000):
            return port


def _answers(port: int) -> bool:
    client = SyncRedis(port=port, socket_timeout=0.2, socket_connect_timeout=0.2)
    try:
        return bool(client.ping())
    except RedisError:
        return False
    finally:
        client.close()


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.05)


@dataclass
class RedisServer:
    """One private ``redis-server``; ``stop``/``start`` simulate an outage."""

    workdir: Path
    cluster: bool = False
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        if self.cluster:
            config = self.workdir / f"nodes-{self.port}.conf"
            command += ["--cluster-enabled", "yes", "--cluster-config-file", str(config)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.process = process

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited with {process.returncode}")
            return _answers(self.port)

        _wait_for(up, f"redis-server on port {self.port}")

    def kill(self) -> None:
        """SIGKILL, a crash: with no RDB or AOF, ``start()`` again comes back empty."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class RedisClusterNodes:
    servers: list[RedisServer]

    @property
    def seed_url(self) -> str:
        return self.servers[0].url

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]


def _cluster_ok(port: int) -> bool:
    info = subprocess.run(
        ["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True, text=True, check=False
    )
    return "cluster_state:ok" in info.stdout and "cluster_known_nodes:3" in info.stdout


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """Three primaries, no replicas, on free ports; killed at the end of the session."""
    require_binaries()
    workdir = tmp_path_factory.mktemp("redis-cluster")
    nodes = RedisClusterNodes([RedisServer(workdir, cluster=True) for _ in range(3)])
    try:
        for server in nodes.servers:
            server.start()
        subprocess.run(
            [
                "redis-cli", "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in nodes.ports),
                "--cluster-replicas", "0", "--cluster-yes",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )  # fmt: skip
        for port in nodes.ports:
            _wait_for(functools.partial(_cluster_ok, port), f"cluster_state:ok on port {port}", 30.0)
        yield nodes
    finally:
        for server in nodes.servers:
            server.stop()
