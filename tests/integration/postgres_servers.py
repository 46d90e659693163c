"""A private PostgreSQL 15 primary and a streaming standby of it, for tests
that stop, kill, restart or delay a server (the machine's shared server on
5432 is never touched).

``PrimaryWithStandby.start()`` runs ``initdb`` for the primary, starts it on a
free port, copies it with ``pg_basebackup -R`` (a physical replication slot
keeps the WAL a stopped standby still needs) and starts the copy as a hot
standby on another free port. Both listen on 127.0.0.1 only, with their unix
sockets in their own folder, trust authentication (replication included) and
settings that make them cheap: 16 MB of shared buffers, ``fsync=off`` (safe
against killed processes, since the kernel keeps their writes; not against a
machine crash). Up in one to three seconds.

Each node (``PgNode``) can be

* ``stop()``-ped: a fast shutdown (SIGINT): clients are disconnected, the
  server checkpoints and exits;
* ``kill()``-ed: SIGKILL to the postmaster and every process of its cluster,
  at once, as a crashed host or ``docker kill`` would; the next ``start()``
  runs crash recovery, and clients see their connections reset;
* ``start()``-ed again on the same port and data, or ``restart()``-ed (stop,
  then start; ``restart(kill=True)`` kills instead). ``start()`` returns once
  the node accepts connections. The standby reconnects by itself to a
  restarted primary (within ``wal_retrieve_retry_interval``, 0.5 s), and the
  slot keeps the WAL it missed; ``wait_replayed()`` waits until it caught up.

Everything is synchronous; an async test calls it through ``asyncio.to_thread``.

``set_apply_delay(s)`` sets the standby's ``recovery_min_apply_delay``: it
still receives WAL at once but shows a commit only ``s`` seconds after it,
which is how a lagging replica is made on purpose.

Running as root (CI), the servers run as the ``postgres`` OS user (initdb and
postgres refuse root), so the folder is made with ``tempfile.mkdtemp`` and
given to that user: pytest's own tmp folder is private to root. The servers'
logs are copied to ``keep_logs_in`` when the pair is closed.

No leak: every process spawned carries ``TASKCORE_TEST_PG=<folder>`` (and a
node's ``TASKCORE_TEST_PG_NODE=<data dir>``) in its environment; ``close()``
SIGKILLs everything carrying it, also at exit, before removing the folder.
The postmasters get ``PR_SET_PDEATHSIG`` (SIGQUIT: immediate shutdown), so
they die with the test process even when it is killed; the folder such a run
leaves behind is removed by a later one once it is an hour old.

``pg_primary_with_standby`` is the pair for one test module;
``replicated_database`` a migrated database of the test's own on it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import pwd
import queue
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.abc import Query

from taskcore.adapters.postgres import migrate
from tests.requirements import unavailable

BIN = Path("/usr/lib/postgresql/15/bin")
INSTALL = "install PostgreSQL 15's server (`apt-get install -y postgresql-15`)"
MARKER = "TASKCORE_TEST_PG"
NODE_MARKER = "TASKCORE_TEST_PG_NODE"
SLOT = "taskcore_standby"
DELAY_FILE = "taskcore_apply_delay.conf"

# In postgresql.conf, so pg_basebackup copies it to the standby; what differs
# per node (port, socket folder) is given on the command line.
CONF = f"""
# tests/integration/postgres_servers.py: a throwaway test cluster
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
hot_standby = on
wal_retrieve_retry_interval = 500ms
max_connections = 80
shared_buffers = 16MB
fsync = off
full_page_writes = off
log_line_prefix = '%m [%p] %q%a '
include_if_exists = '{DELAY_FILE}'
"""

HBA = """
local all all trust
host all all 127.0.0.1/32 trust
local replication all trust
host replication all 127.0.0.1/32 trust
"""

T = TypeVar("T")

try:  # looked up here: nothing may be loaded between fork and exec
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def _die_with_parent() -> None:  # in the child, after the user switch, before exec
    if _prctl is not None:
        _prctl(1, signal.SIGQUIT)  # PR_SET_PDEATHSIG; SIGQUIT is postgres's immediate shutdown


class _Spawner:
    """One long-lived thread forks every postmaster: PR_SET_PDEATHSIG fires when
    the *thread* that forked the child ends, and a test may start a node from
    a short-lived one (``asyncio.to_thread``)."""

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


class PgServerError(RuntimeError):
    pass


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768 up), so no outgoing
    connection takes it between this check and the server's start."""
    while True:
        port = random.randrange(10_000, 32_700)
        if _port_free(port):
            return port


def _marked_pids(key: str, value: str) -> list[int]:
    """The processes whose environment holds ``key=value`` (a zombie's reads as empty)."""
    needle = f"{key}={value}".encode()
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


def _kill_marked(key: str, value: str) -> None:
    """SIGKILL every process carrying ``key=value`` until none is left."""
    for _ in range(200):
        if not (pids := _marked_pids(key, value)):
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    raise PgServerError(f"processes survive SIGKILL: {_marked_pids(key, value)}")


def _wait_for(check: Callable[[], bool], what: str, timeout_s: float, detail: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise PgServerError(f"timed out after {timeout_s:g} s waiting for {what}\n{detail()}")
        time.sleep(0.05)


class _Owner:
    """Who the servers run as: ``postgres`` when we are root, else ourselves."""

    def __init__(self) -> None:
        self.switch = os.geteuid() == 0
        entry = pwd.getpwnam("postgres") if self.switch else pwd.getpwuid(os.geteuid())
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def popen_options(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []} if self.switch else {}

    def give(self, path: Path) -> None:
        if self.switch:
            os.chown(path, self.uid, self.gid)


class PgNode:
    """One server of the pair: its data folder, port and postmaster."""

    def __init__(self, name: str, base_dir: Path, port: int, owner: _Owner, env: dict[str, str]) -> None:
        self.name = name
        self.data_dir = base_dir / name
        self.socket_dir = base_dir / f"{name}-socket"
        self.log = base_dir / f"{name}.log"
        self.port = port
        self._owner = owner
        self._env = {**env, NODE_MARKER: str(self.data_dir)}
        self._postmaster: subprocess.Popen[bytes] | None = None

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        return self._postmaster is not None and self._postmaster.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return f"== {self.name}: no log"
        tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join([f"== {self.name}.log (port {self.port})", *tail])

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the postmaster; return once it accepts connections."""
        if self.running:
            return
        self.socket_dir.mkdir(exist_ok=True)
        self._owner.give(self.socket_dir)
        command = [
            str(BIN / "postgres"), "-D", str(self.data_dir),
            "-c", f"port={self.port}",
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", f"cluster_name=taskcore-test-{self.name}",
        ]  # fmt: skip

        def spawn() -> subprocess.Popen[bytes]:
            with self.log.open("ab") as out:
                return subprocess.Popen(
                    command,
                    env=self._env,
                    cwd=self.data_dir.parent,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                    **self._owner.popen_options(),
                )

        self._postmaster = _Spawner.run(spawn)
        self.wait_ready(timeout_s)

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=2, autocommit=True) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until the node accepts connections (a standby: once it is consistent)."""

        def ready() -> bool:
            if not self.running:
                code = None if self._postmaster is None else self._postmaster.returncode
                raise PgServerError(f"{self.name} is not running (exit {code})\n{self.log_tail()}")
            return self.answers()

        _wait_for(ready, f"{self.name} to accept connections", timeout_s, self.log_tail)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Fast shutdown (SIGINT): sessions are ended, a checkpoint written; kill if it hangs."""
        postmaster = self._postmaster
        if postmaster is not None and postmaster.poll() is None:
            postmaster.send_signal(signal.SIGINT)
            try:
                postmaster.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                self.kill()
                raise PgServerError(
                    f"{self.name} did not stop within {timeout_s:g} s\n{self.log_tail()}"
                ) from exc
        _kill_marked(NODE_MARKER, str(self.data_dir))  # nothing should be left; be sure

    def kill(self) -> None:
        """SIGKILL the postmaster, then every process of this node: a crash.
        Returns once all are gone, so ``start()`` may follow at once."""
        postmaster = self._postmaster
        if postmaster is not None and postmaster.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                postmaster.kill()
        _kill_marked(NODE_MARKER, str(self.data_dir))
        if postmaster is not None:
            postmaster.wait(timeout=30)

    def restart(self, *, kill: bool = False, timeout_s: float = 60.0) -> None:
        """Stop (or with ``kill`` crash) and start again on the same port and data."""
        if kill:
            self.kill()
        else:
            self.stop(timeout_s)
        self.start(timeout_s)

    def sql(self, query: Query, *params: Any, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url(dbname), connect_timeout=5, autocommit=True) as connection:
            cursor = connection.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def client_queries(self, dbname: str, since: datetime | None = None) -> list[str]:
        """The last statement of each client session in ``dbname`` (started
        ``since`` then, when given): who reads from this node, and what."""
        rows = self.sql(
            "SELECT query FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
            " AND query_start >= coalesce(%s::timestamptz, '-infinity')",
            dbname,
            since,
        )
        return [query for (query,) in rows]


def _start_on_a_free_port(node: PgNode, timeout_s: float) -> None:
    """A node's first start: a busy machine may take its free port before the
    server binds it, so up to three tries, each on another free port."""
    for attempt in range(3):
        try:
            node.start(timeout_s)
            return
        except PgServerError:
            if attempt == 2 or _port_free(node.port):
                raise
            node.port = free_port()


def _remove_stale_folders(older_than_s: float = 3600.0) -> None:
    """Folders of earlier runs killed before they could clean up: old, and no
    process carries their marker any more (their servers died with them)."""
    for folder in Path(tempfile.gettempdir()).glob("taskcore-pg-*"):
        with contextlib.suppress(OSError):
            if time.time() - folder.stat().st_mtime > older_than_s and not _marked_pids(MARKER, str(folder)):
                shutil.rmtree(folder, ignore_errors=True)


class PrimaryWithStandby:
    """A private primary and its streaming standby; ``close()`` kills both and removes the folder."""

    def __init__(self, keep_logs_in: Path | None = None) -> None:
        _remove_stale_folders()
        self._owner = _Owner()
        self.base_dir = Path(tempfile.mkdtemp(prefix="taskcore-pg-")).resolve()
        self._owner.give(self.base_dir)
        self._keep_logs_in = keep_logs_in
        env = {"PATH": f"{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        self._env = {**env, MARKER: str(self.base_dir)}
        self.primary = PgNode("primary", self.base_dir, free_port(), self._owner, self._env)
        self.standby = PgNode("standby", self.base_dir, free_port(), self._owner, self._env)
        atexit.register(self.close)

    @property
    def nodes(self) -> tuple[PgNode, PgNode]:
        return self.primary, self.standby

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            command,
            env=self._env,
            cwd=self.base_dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._owner.popen_options(),
        )
        if done.returncode != 0:
            raise PgServerError(f"{' '.join(command)}: exit {done.returncode}\n{done.stdout}{done.stderr}")

    def _write(self, path: Path, text: str, mode: str = "w") -> None:
        with path.open(mode) as out:
            out.write(text)
        self._owner.give(path)

    def start(self, timeout_s: float = 60.0) -> None:
        """initdb, start the primary, copy it, start the standby, wait until it streams."""
        primary, standby = self.nodes
        self._run(
            str(BIN / "initdb"), "-D", str(primary.data_dir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        self._write(primary.data_dir / "postgresql.conf", CONF, "a")
        self._write(primary.data_dir / "pg_hba.conf", HBA)
        _start_on_a_free_port(primary, timeout_s)
        self._run(
            str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(standby.data_dir), "-R", "-X", "stream", "-C", "-S", SLOT,
            "--checkpoint=fast", "--no-sync",
        )  # fmt: skip
        _start_on_a_free_port(standby, timeout_s)
        self.wait_replayed(timeout_s)

    def wait_replayed(self, timeout_s: float = 60.0) -> None:
        """Until the standby has replayed everything the primary has written so
        far (``pg_last_wal_replay_lsn() >= pg_current_wal_lsn()``): a row
        committed on the primary before this call is then visible on the
        standby. With an apply delay this takes at least the delay."""
        ((target,),) = self.primary.sql("SELECT pg_current_wal_lsn()::text")

        def replayed() -> bool:
            try:
                ((done,),) = self.standby.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", target)
            except psycopg.Error:
                return False  # restarting: try again
            return bool(done)

        def detail() -> str:
            try:
                lsn, status = self.standby.sql(
                    "SELECT pg_last_wal_replay_lsn()::text, (SELECT status FROM pg_stat_wal_receiver)"
                )[0]
            except psycopg.Error as exc:
                lsn, status = "?", f"standby does not answer: {exc}"
            return f"replayed {lsn} of {target}, receiver {status}\n{self.standby.log_tail()}"

        _wait_for(replayed, f"the standby to replay up to {target}", timeout_s, detail)

    def set_apply_delay(self, seconds: float) -> None:
        """The standby's ``recovery_min_apply_delay``: it shows a commit only this
        long after the primary made it. Reloaded at once when the standby runs."""
        milliseconds = round(seconds * 1000)
        self._write(self.standby.data_dir / DELAY_FILE, f"recovery_min_apply_delay = {milliseconds}\n")
        if not self.standby.running:
            return
        ((reloaded,),) = self.standby.sql("SELECT pg_reload_conf()")
        assert reloaded

        def applied() -> bool:
            # New sessions see what the postmaster has reloaded; it signals the
            # startup process (the one that applies the delay) before that.
            shown = self.standby.sql(
                "SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'"
            )
            return shown == [(str(milliseconds),)]

        _wait_for(applied, f"recovery_min_apply_delay = {milliseconds}", 30.0, self.standby.log_tail)

    def ensure_running(self, timeout_s: float = 60.0) -> None:
        """Both nodes up, no apply delay, the standby caught up: the state a test starts from."""
        for node in self.nodes:
            if not node.running:
                node.start(timeout_s)
        self.set_apply_delay(0)
        self.wait_replayed(timeout_s)

    def create_database(self, name: str) -> None:
        self.primary.sql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        self.primary.sql(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def close(self) -> None:
        """Kill every process of the pair, keep the logs if asked, remove the folder."""
        atexit.unregister(self.close)
        for node in self.nodes:
            node.kill()
        _kill_marked(MARKER, str(self.base_dir))  # an initdb or pg_basebackup cut short
        if self._keep_logs_in is not None:
            for node in self.nodes:
                if node.log.exists():
                    shutil.copy(node.log, self._keep_logs_in / node.log.name)
        shutil.rmtree(self.base_dir, ignore_errors=True)


def require_binaries() -> None:
    missing = [name for name in ("initdb", "postgres", "pg_basebackup") if not (BIN / name).exists()]
    if missing:
        unavailable(f"{', '.join(missing)} missing from {BIN}: {INSTALL}")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            unavailable(f"running as root without a postgres OS user to run the servers as: {INSTALL}")


@pytest.fixture(scope="module")
def pg_primary_with_standby(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrimaryWithStandby]:
    """A private primary and standby for the module (about 2 s to start); killed, and removed, afterwards."""
    require_binaries()
    started = time.monotonic()
    pair = PrimaryWithStandby(keep_logs_in=tmp_path_factory.mktemp("pg-replica-logs"))
    try:
        pair.start()
        took = time.monotonic() - started
        ports = f"primary :{pair.primary.port}, standby :{pair.standby.port}"
        print(f"\nprivate PostgreSQL {ports} up in {took:.1f} s")
        yield pair
    finally:
        pair.close()


class ReplicatedDatabase(NamedTuple):
    name: str
    primary_url: str
    standby_url: str


@pytest.fixture
async def replicated_database(
    pg_primary_with_standby: PrimaryWithStandby,
) -> AsyncIterator[ReplicatedDatabase]:
    """A migrated database of the test's own on the private primary, replayed on
    the standby. Afterwards both nodes run again with no apply delay (whatever
    the test did to them) and the database is dropped."""
    pair = pg_primary_with_standby
    name = f"t_{uuid.uuid4().hex[:12]}"
    await asyncio.to_thread(pair.ensure_running)
    await asyncio.to_thread(pair.create_database, name)
    try:
        await migrate(pair.primary.url(name))
        await asyncio.to_thread(pair.wait_replayed)
        yield ReplicatedDatabase(name, pair.primary.url(name), pair.standby.url(name))
    finally:
        await asyncio.to_thread(pair.ensure_running)
        await asyncio.to_thread(pair.drop_database, name)
