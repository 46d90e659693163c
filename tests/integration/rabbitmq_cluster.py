"""A private three-node RabbitMQ cluster for tests that stop a node (stdlib only),
or a private single node (``size=1``) for tests that restart the broker.

Nodes ``tc1..tc3@localhost`` on free ports, for a base port ``B``: AMQP on
``B..B+2``, Erlang distribution on ``B+10..B+12``, a private epmd on
``B+20``, the CLI's distribution ports in ``B+30..B+49``. Starting takes
25-35 s on a loaded machine (three boots in parallel, then two joins);
stopping about a second. A single node boots in 5-15 s; ``shutdown_node``
stops one cleanly and ``start_node`` boots it again on its own data (durable
queues and persistent messages survive).

Kept apart from the machine's own node (``rabbit@localhost`` on 5672):

* the scripts in ``/usr/lib/rabbitmq/bin`` run directly: the ``/usr/sbin``
  wrappers, run as root, ``su rabbitmq`` into ``/var/lib/rabbitmq`` (the
  shared node's cookie) and log to ``/var/log/rabbitmq``;
* a private ``HOME`` holds a private ``.erlang.cookie`` (the server and the
  CLI read ``$HOME/.erlang.cookie``);
* ``RABBITMQ_CONF_ENV_FILE`` names an empty private file, so
  ``/etc/rabbitmq/rabbitmq-env.conf`` is never read, and every other path
  (config, plugins, mnesia, logs) is private too;
* a private epmd, our child, on its own port; the environment is built from
  scratch (no inherited ``RABBITMQ_*`` or ``ERL_*``).

No leak: every process spawned carries ``MARKER=<base dir>`` in its
environment, and ``stop()`` (also at exit, and ``start()`` for a crashed
earlier run) SIGKILLs every process that carries it. Nodes get
``PR_SET_PDEATHSIG``, so they die with the test process even on SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import queue
import random
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.requirements import require_tool, unavailable

SBIN = Path("/usr/lib/rabbitmq/bin")
MARKER = "TASKCORE_TEST_RABBIT_CLUSTER"
NODE_MARKER = "TASKCORE_TEST_RABBIT_NODE"
INSTALL = "install RabbitMQ (`apt-get install -y rabbitmq-server`), the cluster test runs its scripts"
_DIST_ARGS = "-kernel inet_dist_use_interface {127,0,0,1}"

T = TypeVar("T")

try:  # looked up here: nothing may be loaded between fork and exec
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def _die_with_parent() -> None:  # in the child, between fork and exec
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Spawner:
    """One long-lived thread forks every node.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, so a
    node started from a short-lived thread (``asyncio.to_thread``) would be
    killed when that thread retires.
    """

    _jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] | None = None
    _lock = threading.Lock()

    @classmethod
    def run(cls, job: Callable[[], T]) -> T:
        with cls._lock:
            if cls._jobs is None:
                cls._jobs = queue.Queue()
                threading.Thread(target=cls._loop, args=(cls._jobs,), daemon=True).start()
        answer: queue.Queue[Any] = queue.Queue()
        cls._jobs.put((job, answer))
        result = answer.get()
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    @staticmethod
    def _loop(jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]]) -> None:
        while True:
            job, answer = jobs.get()
            try:
                answer.put(job())
            except BaseException as exc:  # handed to the caller
                answer.put(exc)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_base_port() -> int:
    """A base port whose 50 ports (see the module docstring) are all free now.

    Below Linux's ephemeral range (32768 up), so no outgoing connection takes
    one of them between this check and the nodes' start.
    """
    while True:
        base = random.randrange(10_000, 32_700, 50)
        if all(_port_free(base + offset) for offset in (0, 1, 2, 10, 11, 12, 20, *range(30, 50))):
            return base


def _marked_pids(marker: str, key: str = MARKER) -> list[int]:
    """The processes whose environment holds ``key=marker`` (a zombie's reads as empty)."""
    needle = f"{key}={marker}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in environ:
                pids.append(int(entry))
    return pids


def _kill_all(find: Callable[[], list[int]]) -> None:
    """SIGKILL what ``find`` lists until it lists nothing."""
    for _ in range(100):
        if not (pids := find()):
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    raise ClusterError(f"processes survive SIGKILL: {find()}")


class ClusterError(RuntimeError):
    pass


class RabbitCluster:
    """Private nodes (three, or ``size``); ``stop_node(i)`` kills one, ``shutdown_node(i)`` stops
    one cleanly and ``start_node(i)`` boots it again, ``stop()`` kills all and removes ``base_dir``."""

    def __init__(self, base_dir: Path, base_port: int, size: int = 3) -> None:
        self.base_dir = base_dir.resolve()
        self.size = size
        self.nodes = [f"tc{i + 1}@localhost" for i in range(size)]
        self.amqp_ports = [base_port + i for i in range(size)]
        self.dist_ports = [base_port + 10 + i for i in range(size)]
        self.epmd_port = base_port + 20
        self.cli_ports = (base_port + 30, base_port + 49)
        self.home = self.base_dir / "home"
        self._nodes: dict[int, subprocess.Popen[bytes]] = {}
        self._epmd: subprocess.Popen[bytes] | None = None
        atexit.register(self.kill_leftovers)

    # -- addresses

    def url(self, i: int) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_ports[i]}/"

    def urls(self) -> list[str]:
        return [self.url(i) for i in range(self.size)]

    # -- environment

    def _env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/lib/erlang/bin:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.home),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.base_dir / "rabbitmq-env.conf"),
            MARKER: str(self.base_dir),
        }

    def _node_env(self, i: int) -> dict[str, str]:
        folder = self.base_dir / f"node{i + 1}"
        return {
            **self._env(),
            NODE_MARKER: self.nodes[i],
            "RABBITMQ_NODENAME": self.nodes[i],
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_ports[i]),
            "RABBITMQ_DIST_PORT": str(self.dist_ports[i]),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_CONFIG_FILES": str(folder / "conf.d"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_MOTD_FILE": str(folder / "motd"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": _DIST_ARGS,
        }

    def _write_files(self) -> None:
        self.home.mkdir(parents=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
        (self.base_dir / "rabbitmq-env.conf").write_text("# empty: not /etc/rabbitmq's\n")
        for i in range(self.size):
            folder = self.base_dir / f"node{i + 1}"
            for sub in ("mnesia", "log", "conf.d"):
                (folder / sub).mkdir(parents=True)
            (folder / "enabled_plugins").write_text("[].\n")
            (folder / "rabbitmq.conf").write_text(
                f"listeners.tcp.1 = 127.0.0.1:{self.amqp_ports[i]}\n"
                "log.console = false\nlog.file.level = info\ncluster_name = taskcore-test\n"
            )

    # -- the CLI

    def ctl(self, i: int, *args: str, tool: str = "rabbitmqctl", timeout: float = 60) -> str:
        env = {
            **self._env(),
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.cli_ports[0]),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(self.cli_ports[1]),
            "RABBITMQ_CTL_ERL_ARGS": _DIST_ARGS,
        }
        command = [str(SBIN / tool), "-n", self.nodes[i], *args]
        done = subprocess.run(
            command, env=env, cwd=self.base_dir, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise ClusterError(f"{' '.join(command)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
        return done.stdout

    def queues(self, *columns: str) -> list[dict[str, Any]]:
        """``rabbitmqctl list_queues <columns>`` asked of the first running node that answers."""
        for i in self.running():
            try:
                out = self.ctl(i, "-q", "list_queues", *columns, "--formatter", "json", timeout=30)
                listed: list[dict[str, Any]] = json.loads(out)
                return listed
            except (ClusterError, subprocess.TimeoutExpired, ValueError):
                continue
        raise ClusterError("no node answered list_queues")

    def leader(self, queue_name: str) -> str | None:
        """The node leading the quorum queue, when one does."""
        for listed in self.queues("name", "leader"):
            if listed["name"] == queue_name and listed.get("leader"):
                return str(listed["leader"])
        return None

    # -- processes

    def _spawn(self, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        def spawn() -> subprocess.Popen[bytes]:
            with log.open("ab") as out:
                return subprocess.Popen(
                    command,
                    env=env,
                    cwd=self.base_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )

        return _Spawner.run(spawn)

    def _wait_node(self, i: int, deadline: float) -> None:
        node = self._nodes[i]
        while not _listening(self.amqp_ports[i]):
            if node.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"{self.nodes[i]} did not start (exit {node.poll()})")
            time.sleep(0.1)
        self.ctl(i, "await_startup", "--timeout", str(max(5, int(deadline - time.monotonic()))))

    def log_tail(self, i: int, lines: int = 30) -> str:
        folder = self.base_dir / f"node{i + 1}"
        tails = []
        for log in (folder / "stdout.log", folder / "log" / f"{self.nodes[i]}.log"):
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                tails.append("\n".join([f"== {log.name}", *tail]))
        return "\n".join(tails)

    def start(self, timeout: float = 180) -> None:
        """Boot the nodes in parallel, join 2..N to node 1, wait until all N run."""
        self.kill_leftovers()
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self._write_files()
        deadline = time.monotonic() + timeout
        try:
            epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
            command = [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"]
            self._epmd = self._spawn(command, self._env(), self.base_dir / "epmd.log")
            while not _listening(self.epmd_port):
                if self._epmd.poll() is not None or time.monotonic() > deadline:
                    raise ClusterError(f"the private epmd on port {self.epmd_port} did not start")
                time.sleep(0.02)
            for i in range(self.size):
                self._boot(i)
            for i in range(self.size):
                self._wait_node(i, deadline)
            for i in range(1, self.size):
                self.ctl(i, "stop_app")
                self.ctl(i, "join_cluster", self.nodes[0])
                self.ctl(i, "start_app")
            while len(self.running_nodes()) < self.size:
                if time.monotonic() > deadline:
                    raise ClusterError(f"only {self.running_nodes()} of {self.nodes} run after {timeout:g} s")
                time.sleep(0.5)
        except Exception as exc:
            logs = "\n".join(f"-- {self.nodes[i]}\n{self.log_tail(i)}" for i in range(self.size))
            self.stop()
            raise ClusterError(f"the cluster did not start: {exc}\n{logs}") from exc
        except BaseException:
            self.stop()
            raise

    def _boot(self, i: int) -> None:
        log = self.base_dir / f"node{i + 1}" / "stdout.log"
        self._nodes[i] = self._spawn([str(SBIN / "rabbitmq-server")], self._node_env(i), log)

    def shutdown_node(self, i: int, timeout: float = 60) -> None:
        """Shut node ``i`` down cleanly (``rabbitmqctl shutdown``: clients are told
        the connection is closing, durable queues are written out); return once
        its process has exited."""
        node = self._nodes[i]
        if node.poll() is None:
            self.ctl(i, "shutdown", timeout=timeout)
            node.wait(timeout=30)
        self.stop_node(i)  # anything of it still left

    def start_node(self, i: int, timeout: float = 120) -> None:
        """Boot a stopped node ``i`` again on its ports and data; return once it runs its app."""
        if self._nodes[i].poll() is None:
            return
        deadline = time.monotonic() + timeout
        self._boot(i)
        try:
            self._wait_node(i, deadline)
        except (ClusterError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"{self.nodes[i]} did not come back: {exc}\n{self.log_tail(i)}") from exc

    def running_nodes(self) -> list[str]:
        """The cluster's running nodes, as node 1 (or the first live one) sees them."""
        for i in self.running():
            try:
                status = json.loads(self.ctl(i, "-q", "cluster_status", "--formatter", "json", timeout=30))
                return sorted(status.get("running_nodes", []))
            except (ClusterError, subprocess.TimeoutExpired, ValueError):
                continue
        return []

    def running(self) -> list[int]:
        return [i for i, node in sorted(self._nodes.items()) if node.poll() is None]

    def stop_node(self, i: int) -> None:
        """Kill node ``i`` (SIGKILL to its whole process group): a crash, not a shutdown."""
        node = self._nodes.get(i)
        if node is not None and node.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait(timeout=30)
        # beam.smp may have left the process group: make sure it is gone too
        ours = self.marked_pids
        _kill_all(lambda: [pid for pid in _marked_pids(self.nodes[i], NODE_MARKER) if pid in ours()])

    def stop(self) -> None:
        """Kill every node, the epmd and anything else carrying the marker; remove ``base_dir``."""
        for i in range(self.size):
            self.stop_node(i)
        self.kill_leftovers()
        for process in [*self._nodes.values(), self._epmd]:
            if process is not None and process.poll() is None:
                process.wait(timeout=10)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def kill_leftovers(self) -> None:
        _kill_all(self.marked_pids)

    def marked_pids(self) -> list[int]:
        return _marked_pids(str(self.base_dir))


def started_cluster(tmp_path_factory: pytest.TempPathFactory, size: int) -> RabbitCluster:
    """A private cluster of ``size`` nodes, running; tried once more on other ports."""
    require_tool("rabbitmq-server", INSTALL)
    if not (SBIN / "rabbitmq-server").exists():
        unavailable(f"{SBIN / 'rabbitmq-server'} missing: {INSTALL}")
    started = time.monotonic()
    cluster = RabbitCluster(tmp_path_factory.mktemp("rabbit-cluster"), free_base_port(), size)
    try:
        cluster.start()
    except ClusterError as exc:  # once more on other ports: a busy machine may have taken one
        print(f"\nprivate RabbitMQ failed to start, trying other ports: {exc}")
        cluster = RabbitCluster(tmp_path_factory.mktemp("rabbit-cluster"), free_base_port(), size)
        cluster.start()
    took = time.monotonic() - started
    print(f"\nprivate RabbitMQ {cluster.nodes} on ports {cluster.amqp_ports} up in {took:.1f} s")
    return cluster


def stopped(cluster: RabbitCluster) -> None:
    started = time.monotonic()
    cluster.stop()
    print(f"\nprivate RabbitMQ {cluster.nodes} stopped in {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="module")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    """A cluster started once for the module; killed, and its folder removed, afterwards."""
    cluster = started_cluster(tmp_path_factory, 3)
    try:
        yield cluster
    finally:
        stopped(cluster)


@pytest.fixture(scope="module")
def rabbit_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    """A single private node (``tc1@localhost``) for the module, to restart at will; killed, and
    its folder removed, afterwards."""
    node = started_cluster(tmp_path_factory, 1)
    try:
        yield node
    finally:
        stopped(node)
