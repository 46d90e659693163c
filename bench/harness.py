"""Shared plumbing for the benchmark (``bench/run.py``) and the CI guard (``bench/guard.py``).

Self-contained on purpose: it needs only what the project's venv already has
(psycopg, aio-pika, redis), never ``../shared/bench``. Also a tiny command line
for the shell scripts (``start_ours.sh``, ``reset_ours.sh``)::

    python bench/harness.py ensure-db  NAME [--fresh]
    python bench/harness.py reset      NAME QUEUE PREFIX
    python bench/harness.py wait-consumer QUEUE [--timeout 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import string
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
VENV_BIN = REPO / ".venv" / "bin"
TASKCORE = str(VENV_BIN / "taskcore")


# --------------------------------------------------------------------------- services
@dataclass(frozen=True)
class Services:
    """Where the real services are. ``pg_server`` must be allowed to CREATE DATABASE."""

    pg_server: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"

    @classmethod
    def from_env(cls) -> Services:
        """``BENCH_*`` first, then the variables CI exports for the test suite, then the defaults."""
        env = os.environ
        return cls(
            pg_server=env.get("BENCH_DATABASE_URL") or env.get("TASKCORE_TEST_DATABASE_URL") or cls.pg_server,
            redis_url=env.get("BENCH_REDIS_URL") or env.get("TASKCORE_TEST_REDIS_URL") or cls.redis_url,
            amqp_url=env.get("BENCH_AMQP_URL") or env.get("TASKCORE_TEST_AMQP_URL") or cls.amqp_url,
        )

    def database_url(self, name: str) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(self.pg_server, dbname=name)


def drop_database(services: Services, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(services.pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def ensure_database(services: Services, name: str, *, fresh: bool) -> str:
    """Create database ``name`` (dropped first when ``fresh``) and return its URL.
    The schema comes from the project's own migrations (``taskcore migrate``
    semantics: the processes would apply them at start anyway)."""
    import psycopg
    from psycopg import sql

    if fresh:
        drop_database(services, name)
    with psycopg.connect(services.pg_server, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    url = services.database_url(name)
    from taskcore.adapters.postgres import migrate

    asyncio.run(migrate(url))
    return url


async def reset_state(services: Services, db_url: str, queue: str, prefix: str) -> None:
    """Empty this bench's table, queues and cache keys, and nothing else on the shared servers."""
    import aio_pika
    import psycopg

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        # CASCADE: the rows that refer to tasks (webhook deliveries) go with them.
        await conn.execute("TRUNCATE tasks, idempotency_keys RESTART IDENTITY CASCADE")
    connection = await aio_pika.connect(services.amqp_url)
    try:
        for name in (queue, f"{queue}.dlq"):
            channel = await connection.channel()
            try:
                q = await channel.declare_queue(name, passive=True)
                await q.purge()
            except Exception:
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()
    finally:
        await connection.close()
    await delete_keys(services.redis_url, prefix)


async def delete_keys(redis_url: str, prefix: str) -> int:
    import redis.asyncio as aioredis

    if not prefix:
        raise ValueError("refusing to delete keys without a prefix")
    client = aioredis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.unlink(*batch)
                batch = []
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


async def delete_queues(amqp_url: str, names: Sequence[str]) -> None:
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    try:
        for name in names:
            channel = await connection.channel()
            try:
                await channel.queue_delete(name)
            except Exception:
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()
    finally:
        await connection.close()


async def consumer_count(amqp_url: str, queue: str) -> int:
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        q = await channel.declare_queue(queue, passive=True)
        return q.declaration_result.consumer_count or 0
    finally:
        await connection.close()


async def wait_consumer(
    amqp_url: str, queue: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode} before it consumed {queue!r}")
        try:
            if await consumer_count(amqp_url, queue) >= 1:
                return
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no consumer on {queue!r} after {timeout_s:.0f} s")


# ---------------------------------------------------------------------- processes
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_installed() -> None:
    """``make install``: a no-op unless the source list changed. The install is
    strict-editable, so a module someone just added is importable only after it;
    others edit this tree while the bench runs."""
    out = subprocess.run(["make", "-s", "install"], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"make install failed:\n{out.stdout[-1500:]}{out.stderr[-1500:]}")


def clean_env(settings: dict[str, str]) -> dict[str, str]:
    """The caller's environment without any TASKCORE_* (a developer's own URLs
    must not leak into the bench), plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKCORE_")}
    env.update(settings)
    return env


class Server:
    """One ``taskcore`` process in its own session, its output to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [TASKCORE, *args], env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 40.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def proc_stats(pid: int) -> dict[str, float]:
    """RSS now and its high-water mark (MB), and CPU seconds used so far (user + system)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out["rss_mb" if key == "VmRSS" else "hwm_mb"] = int(value.split()[0]) / 1024
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    except (OSError, IndexError, ValueError):
        pass
    return out


_COMPONENT_OF_COMMAND = {
    "postgres": "postgres",
    "beam.smp": "rabbitmq",
    "erl_child_setup": "rabbitmq",
    "epmd": "rabbitmq",
    "inet_gethost": "rabbitmq",
    "redis-server": "redis",
    "wrk": "load",
}
MACHINE_COMPONENTS = ("api", "worker", "postgres", "rabbitmq", "redis", "load", "kernel", "other")


def machine_cpu(roles: dict[int, str]) -> dict[str, float]:
    """CPU seconds used so far by every process on the machine, by component:
    ``roles`` names processes (and, through them, their children, such as
    the processes of ``taskcore api --workers``); the services and wrk are
    known by their command name, kernel threads by their parent (kthreadd);
    the rest is "other". Two readings around a workload tell where the
    machine's time went. A process that exits in between counts for its
    parent once waited for (wrk for the bench, a closed backend for
    PostgreSQL), else not at all."""
    ticks = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
            head, tail = stat.rsplit(")", 1)
            fields = tail.split()
            procs[int(entry.name)] = (
                int(fields[1]),
                head.split("(", 1)[1],
                # utime, stime, and the children's that exited (wrk, closed backends)
                sum(int(t) for t in fields[11:15]) / ticks,
            )
        except (OSError, IndexError, ValueError):
            continue

    def component(pid: int) -> str:
        ancestor = pid
        while ancestor in procs:
            if ancestor in roles:
                return roles[ancestor]
            ancestor = procs[ancestor][0]
        ppid, command, _ = procs[pid]
        if pid == 2 or ppid == 2:
            return "kernel"
        return _COMPONENT_OF_COMMAND.get(command, "other")

    out = dict.fromkeys(MACHINE_COMPONENTS, 0.0)
    for pid, (_, _, cpu) in procs.items():
        out[component(pid)] += cpu
    return out


def machine_cpu_ms_per(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """``machine_cpu_ms_<component>`` per unit of work, and their total."""
    if n <= 0:
        return {}
    per = {f"machine_cpu_ms_{name}": (after[name] - before[name]) * 1000 / n for name in MACHINE_COMPONENTS}
    per["machine_cpu_ms_total"] = sum(per.values())
    return per


# ------------------------------------------------------------------- HTTP client
class HttpError(Exception):
    pass


class _Conn:
    """One keep-alive HTTP/1.1 connection. Deliberately minimal (Content-Length
    and chunked bodies, no TLS): on a 2-core box a full client library would
    spend more CPU than the server under test."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.writer is None:
                await self._open()
            assert self.reader is not None
            assert self.writer is not None
            try:
                self.writer.write(head + body)
                status_line = await self.reader.readline()
                if not status_line:
                    raise ConnectionResetError("server closed the connection")
                return await self._read_rest(status_line)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _read_rest(self, status_line: bytes) -> tuple[int, bytes]:
        assert self.reader is not None
        status = int(status_line.split(b" ", 2)[1])
        length = None
        chunked = close = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            body = b"".join(parts)
        elif length is not None:
            body = await self.reader.readexactly(length)
        else:
            body = await self.reader.read()
            close = True
        if close:
            self.close()
        return status, body


class HttpClient:
    """A pool of ``size`` keep-alive connections to one server."""

    def __init__(self, base: str, size: int, token: str | None = None) -> None:
        rest = base.split("://", 1)[1].rstrip("/")
        hostport = rest.split("/", 1)[0]
        host, _, port = hostport.partition(":")
        self.host, self.port = host, int(port or 80)
        self._auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
        self._idle: asyncio.Queue[_Conn] = asyncio.Queue()
        self._all = [_Conn(self.host, self.port) for _ in range(size)]
        for conn in self._all:
            self._idle.put_nowait(conn)

    def _head(self, method: str, path: str, body: bytes, content_type: bool) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n".encode() + self._auth
        if content_type:
            head += b"Content-Type: application/json\r\n"
        return head + f"Content-Length: {len(body)}\r\n\r\n".encode()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        conn = await self._idle.get()
        try:
            return await conn.request(self._head(method, path, body, bool(body)), body)
        finally:
            self._idle.put_nowait(conn)

    async def post_json(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self.request("POST", path, body)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.request("GET", path)

    def close(self) -> None:
        for conn in self._all:
            conn.close()


async def wait_http(
    base: str, path: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Until ``GET path`` answers 200."""
    client = HttpClient(base, 1)
    deadline = time.monotonic() + timeout_s
    last = ""
    try:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
            try:
                status, body = await client.get(path)
                if status == 200:
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
                client.close()
                client = HttpClient(base, 1)
            await asyncio.sleep(0.2)
    finally:
        client.close()
    raise RuntimeError(f"{base}{path} not ready after {timeout_s:.0f} s (last: {last})")


# ------------------------------------------------------------------------ numbers
def make_inputs(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    return ["".join(rnd.choices(alphabet, k=32)) for _ in range(n)]


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summarize(values: Sequence[Any]) -> dict[str, float] | None:
    vals = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "runs": len(vals)}


@dataclass
class LoadResult:
    count: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


def install_uvloop() -> str:
    try:
        import uvloop

        uvloop.install()
        return "uvloop"
    except ImportError:
        return "asyncio"


# --------------------------------------------------------------------------- CLI
def _cli() -> int:
    ap = argparse.ArgumentParser(description="bench plumbing for the shell scripts")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ensure-db")
    p.add_argument("name")
    p.add_argument("--fresh", action="store_true")
    p = sub.add_parser("reset")
    p.add_argument("name")
    p.add_argument("queue")
    p.add_argument("prefix")
    p = sub.add_parser("wait-consumer")
    p.add_argument("queue")
    p.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    services = Services.from_env()
    if args.cmd == "ensure-db":
        print(ensure_database(services, args.name, fresh=args.fresh))
    elif args.cmd == "reset":
        asyncio.run(reset_state(services, services.database_url(args.name), args.queue, args.prefix))
    elif args.cmd == "wait-consumer":
        asyncio.run(wait_consumer(services.amqp_url, args.queue, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
