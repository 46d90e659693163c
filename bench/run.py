#!/usr/bin/env python3
"""taskcore benchmark: the project's own ``taskcore api`` + ``taskcore worker`` on real services.

    make bench                                   # everything, 3 runs each (~10 min)
    make bench BENCH_ARGS="--runs 1 --only W1,W2 --n 2000"
    .venv/bin/python bench/run.py --help

One API process and one worker process, started as users start them
(``TASKCORE_AUTH=jwt`` with a token from ``taskcore token``), against the
real PostgreSQL, Redis and RabbitMQ, in a database of their own (created fresh
at the start), their own queue name and their own Redis key prefix, so nothing
collides with the test suite or other benches on the same servers. Servers are
started fresh for every workload and run; the table, queue and keys are
emptied before each.

Workloads (see bench/README.md):
  W1      end-to-end: N reverse tasks (delay 0), <= C in flight over HTTP, wait
          until every row is final, verify every result (DB and HTTP GET).
  W1-lib  W1 with taskcore used as a library: one process submits with
          ``service.submit`` (<= C in flight), one worker runs them.
  bulk    100,000 tasks submitted with ``service.submit_many`` in batches of
          500, one worker: until every row is final, every result verified.
  W2      submit: wrk POST /tasks/ (Lua script, fresh random body, bearer token).
  W3      read: wrk GET /tasks/<id> of a finished task.
  delay   1000 tasks at the default 5 s delay through one worker with a raised
          TASKCORE_WORKER_CONCURRENCY: time until all are done.
  memory  API and worker RSS after a warm-up vs after M more tasks.
  soak    (only with --only soak) 200,000 tasks with a 30 s retention: the
          table's size and the claim latency sampled every 10 s (soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
import psycopg
import soak
from harness import (
    BENCH,
    MACHINE_COMPONENTS,
    REPO,
    TASKCORE,
    VENV_BIN,
    HttpClient,
    Server,
    Services,
    clean_env,
    ensure_database,
    ensure_installed,
    free_port,
    install_uvloop,
    machine_cpu,
    machine_cpu_ms_per,
    make_inputs,
    percentile,
    proc_stats,
    reset_state,
    summarize,
    wait_consumer,
    wait_http,
)

WORKLOADS = ("W1", "W1-lib", "bulk", "W2", "W3", "delay", "memory")
FINAL = "('COMPLETED', 'FAILED', 'CANCELLED')"


# ------------------------------------------------------------------------ the stack
class Stack:
    """Starts and stops one API and one worker against this bench's database/queue/prefix."""

    def __init__(self, args: argparse.Namespace, raw: Path) -> None:
        self.args = args
        self.raw = raw
        self.services = Services.from_env()
        self.db_name = args.db_name
        self.queue = f"{args.db_name}.tasks"
        self.prefix = f"{args.db_name}:"
        self.base = f"http://127.0.0.1:{args.port}"
        self.secret = secrets.token_urlsafe(32)
        self.db_url = ""
        self.token = ""

    def settings(self, **extra: str | None) -> dict[str, str]:
        env = {
            "TASKCORE_DATABASE_URL": self.db_url,
            "TASKCORE_REDIS_URL": self.services.redis_url,
            "TASKCORE_AMQP_URL": self.services.amqp_url,
            "TASKCORE_QUEUE_NAME": self.queue,
            "TASKCORE_CACHE_PREFIX": self.prefix,
            "TASKCORE_AUTH": "jwt",
            "TASKCORE_JWT_SECRET": self.secret,
            "TASKCORE_REVERSE_DELAY_S": "0",
            # As a plain `pip install taskcore` runs: the otel extra is in the dev
            # venv only for its tests (README "Tracing" measures what it costs).
            "TASKCORE_OTEL": "off",
        }
        if not self.args.keep_rate_limit:
            # The default (6000/min per owner) would turn most of W2 into 429s.
            env["TASKCORE_RATE_LIMIT_SUBMIT_PER_MINUTE"] = "0"
        for item in self.args.set:
            key, _, value = item.partition("=")
            env[key] = value
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return clean_env(env)

    def prepare(self) -> None:
        self.db_url = ensure_database(self.services, self.db_name, fresh=True)
        out = subprocess.run(
            [TASKCORE, "token", "--sub", "bench", "--ttl", "7d"],
            env=self.settings(),
            capture_output=True,
            text=True,
            check=True,
        )
        self.token = out.stdout.strip()

    async def reset(self) -> None:
        await reset_state(self.services, self.db_url, self.queue, self.prefix)

    async def start(self, tag: str, worker_env: dict[str, str | None] | None = None) -> tuple[Server, Server]:
        """Worker first (so the API's readiness means the whole stack is ready), then the API."""
        worker = await self.start_worker(tag, worker_env)
        api = Server(
            "api",
            ["api", "--host", "127.0.0.1", "--port", str(self.args.port)],
            self.settings(),
            self.raw / f"api-{tag}.log",
        )
        try:
            await wait_http(self.base, "/health/ready", self.args.ready_timeout, api.proc)
        except Exception as exc:
            api.stop()
            worker.stop()
            raise RuntimeError(f"api did not start ({exc}):\n{api.tail()}") from None
        return api, worker

    async def start_worker(self, tag: str, worker_env: dict[str, str | None] | None = None) -> Server:
        """A worker alone, consuming once this returns (the library workloads need no API)."""
        if not self.args.no_reinstall:
            await asyncio.to_thread(ensure_installed)
        # The worker's /metrics port (default 9100) may be taken by another worker on this machine.
        env = {"TASKCORE_WORKER_METRICS_PORT": str(free_port()), **(worker_env or {})}
        worker = Server("worker", ["worker"], self.settings(**env), self.raw / f"worker-{tag}.log")
        try:
            await wait_consumer(self.services.amqp_url, self.queue, self.args.ready_timeout, worker.proc)
        except Exception:
            worker.stop()
            raise RuntimeError(f"worker did not start:\n{worker.tail()}") from None
        return worker

    def client(self, size: int) -> HttpClient:
        return HttpClient(self.base, size, self.token)


# ---------------------------------------------------------------------- measuring
async def submit_all(client: HttpClient, inputs: list[str], c: int) -> dict[str, Any]:
    n = len(inputs)
    ids: list[int | None] = [None] * n
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    it = iter(range(n))
    decode = msgspec.json.decode

    async def submitter() -> None:
        nonlocal errors
        for i in it:
            body = b'{"input_data":"' + inputs[i].encode() + b'"}'
            t = time.perf_counter()
            try:
                status, resp = await client.post_json("/tasks/", body)
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t)
            statuses[status] += 1
            if status == 201:
                ids[i] = decode(resp)["id"]
            else:
                errors += 1

    t0_wall = time.time()
    t0 = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(c)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "ids": ids,
        "t0_wall": t0_wall,
        "submit_s": elapsed,
        "submit_rate": n / elapsed,
        "submit_errors": errors,
        "submit_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "submit_p50_ms": _ms(percentile(latencies, 0.5)),
        "submit_p99_ms": _ms(percentile(latencies, 0.99)),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


async def max_id(db_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT coalesce(max(id), 0) FROM tasks")).fetchone()
    return int(row[0]) if row else 0


async def wait_final(db_url: str, expected: int, timeout_s: float, after_id: int = 0) -> int:
    """Poll the table (not the API: polling would load the server under test)
    until ``expected`` rows with ids above ``after_id`` are final; returns how many are."""
    deadline = time.monotonic() + timeout_s
    query = f"SELECT count(*) FROM tasks WHERE id > {int(after_id)} AND status IN {FINAL}"
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while True:
            row = await (await conn.execute(query)).fetchone()
            done = int(row[0]) if row else 0
            if done >= expected or time.monotonic() > deadline:
                return done
            await asyncio.sleep(0.05)


ROW_STATS = """
SELECT count(*),
       count(*) FILTER (WHERE status = 'COMPLETED'),
       count(*) FILTER (WHERE status = 'FAILED'),
       coalesce(sum(attempts), 0),
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at)),
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)),
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)),
       extract(epoch FROM min(created_at)),
       extract(epoch FROM max(finished_at))
FROM tasks
WHERE id > %s
"""


async def row_stats(db_url: str, t0_wall: float, after_id: int = 0) -> dict[str, Any]:
    """Latencies from the task rows: queue wait = created_at -> started_at (the
    claim), run = started_at -> finished_at, total = created_at -> finished_at."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        row = await (await conn.execute(ROW_STATS, (after_id,))).fetchone()
    assert row is not None
    n, completed, failed, attempts, wait, run, total, _first_created, last_finished = row
    out: dict[str, Any] = {
        "rows": n,
        "completed": completed,
        "failed": failed,
        "retries": int(attempts) - int(n),
    }
    for name, pair in (("wait", wait), ("run", run), ("total", total)):
        out[f"{name}_p50_ms"] = float(pair[0]) * 1000 if pair and pair[0] is not None else None
        out[f"{name}_p99_ms"] = float(pair[1]) * 1000 if pair and pair[1] is not None else None
    if last_finished is not None:
        out["e2e_s"] = float(last_finished) - t0_wall
    return out


async def verify_results(
    db_url: str, client: HttpClient, ids: list[int | None], inputs: list[str], c: int
) -> dict[str, Any]:
    """Every result checked twice: the stored row, and GET /tasks/{id} through the API."""
    expected = {tid: text[::-1] for tid, text in zip(ids, inputs, strict=True) if tid is not None}
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        rows = await (await conn.execute("SELECT id, status::text, result FROM tasks")).fetchall()
    stored = {tid: (status, result) for tid, status, result in rows}
    db_bad = {tid for tid, want in expected.items() if stored.get(tid) != ("COMPLETED", want)}
    http_bad: set[int] = set()
    it = iter(expected.items())
    decode = msgspec.json.decode

    async def checker() -> None:
        for tid, want in it:
            try:
                status, body = await client.get(f"/tasks/{tid}")
                doc = decode(body) if status == 200 else {}
            except Exception:
                doc = {}
            if doc.get("status") != "COMPLETED" or doc.get("result") != want:
                http_bad.add(tid)

    t = time.perf_counter()
    await asyncio.gather(*(checker() for _ in range(c)))
    elapsed = time.perf_counter() - t
    return {
        "verified": len(expected),
        "db_mismatches": len(db_bad),
        "http_mismatches": len(http_bad),
        "wrong_results": len(db_bad | http_bad),
        "verify_get_rate": len(expected) / elapsed,
    }


def count_failures(res: dict[str, Any]) -> int:
    """Submit errors + tasks never final + tasks final but not the right result."""
    wrong = res["wrong_results"] if "wrong_results" in res else res.get("failed", 0)
    return int(res.get("submit_errors", 0) + res.get("not_completed", 0) + wrong)


def cpu_per_task(before: dict[str, float], after: dict[str, float], n: int) -> float | None:
    if "cpu_s" not in before or "cpu_s" not in after or n <= 0:
        return None
    return (after["cpu_s"] - before["cpu_s"]) * 1000 / n


async def run_tasks(
    stack: Stack, api: Server, worker: Server, inputs: list[str], *, verify: bool, timeout_s: float
) -> dict[str, Any]:
    """Submit ``inputs`` over HTTP, wait until all are final, measure, verify."""
    c = stack.args.concurrency
    client = stack.client(c)
    try:
        base_id = await max_id(stack.db_url)
        roles = {api.pid: "api", worker.pid: "worker", os.getpid(): "load"}
        cpu0 = (proc_stats(api.pid), proc_stats(worker.pid), machine_cpu(roles))
        sub = await submit_all(client, inputs, c)
        submitted = sum(1 for i in sub["ids"] if i is not None)
        done = await wait_final(stack.db_url, submitted, timeout_s, base_id)
        cpu1 = (proc_stats(api.pid), proc_stats(worker.pid), machine_cpu(roles))
        res = {k: v for k, v in sub.items() if k != "ids"}
        res.update(await row_stats(stack.db_url, sub["t0_wall"], base_id))
        res["n"] = len(inputs)
        res["not_completed"] = submitted - done
        if res.get("e2e_s"):
            res["e2e_rate"] = len(inputs) / res["e2e_s"]
        res["api_cpu_ms_per_task"] = cpu_per_task(cpu0[0], cpu1[0], submitted)
        res.update(machine_cpu_ms_per(cpu0[2], cpu1[2], submitted))
        res["worker_cpu_ms_per_task"] = cpu_per_task(cpu0[1], cpu1[1], submitted)
        res["api_rss_mb"] = cpu1[0].get("rss_mb")
        res["worker_rss_mb"] = cpu1[1].get("rss_mb")
        if verify:
            res.update(await verify_results(stack.db_url, client, sub["ids"], inputs, c))
        res["failures"] = count_failures(res)
        res["_ids"] = sub["ids"]
        return res
    finally:
        client.close()


# ------------------------------------------------------------------------- wrk / load
def _ms_unit(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {"req_s": None, "p50_ms": None, "p99_ms": None, "non2xx": 0, "socket_errors": None}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", text):
        out["req_s"] = float(m.group(1))
    for pct in ("50", "99"):
        if m := re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
            out[f"p{pct}_ms"] = _ms_unit(*m.groups())
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        out["non2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors:(.*)", text):
        out["socket_errors"] = m.group(1).strip()
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else None
    return out


async def run_wrk(stack: Stack, url: str, tag: str, script: Path | None) -> dict[str, Any]:
    a = stack.args
    cmd = ["wrk", "-t", str(a.wrk_threads), "-c", str(a.concurrency), "-d", f"{a.duration}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    else:
        cmd += ["-H", f"Authorization: Bearer {stack.token}"]
    cmd.append(url)
    env = dict(os.environ, BENCH_TOKEN=stack.token)
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), a.duration + 60)
    text = stdout.decode(errors="replace")
    shown = " ".join(c if not c.startswith("Authorization") else "Authorization: Bearer <token>" for c in cmd)
    (stack.raw / f"wrk-{tag}.txt").write_text(shown + "\n" + text)
    res = parse_wrk(text)
    if res["req_s"] is None:
        raise RuntimeError(f"wrk failed: {text[-500:]}")
    res["tool"] = "wrk"
    return res


async def run_builtin_load(stack: Stack, method: str, path: str, make_body: Any) -> dict[str, Any]:
    """The fallback when wrk is not installed: C connections, each one request at a time."""
    a = stack.args
    client = stack.client(a.concurrency)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    stop_at = time.perf_counter() + a.duration

    async def loop() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            try:
                status, _ = await client.request(method, path, make_body())
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t)
            statuses[status] += 1

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(loop() for _ in range(a.concurrency)))
    finally:
        client.close()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "tool": "builtin asyncio client",
        "req_s": len(latencies) / elapsed,
        "requests": len(latencies),
        "p50_ms": _ms(percentile(latencies, 0.5)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "non2xx": sum(v for k, v in statuses.items() if not 200 <= k < 400),
        "socket_errors": errors,
    }


# -------------------------------------------------------------------------- workloads
async def w1(stack: Stack, run: int, tag: str) -> dict[str, Any]:
    api, worker = await stack.start(tag)
    try:
        inputs = make_inputs(stack.args.n, seed=run)
        async with profiled(stack, run, "W1", {"api": api.pid, "worker": worker.pid}) as profile:
            res = await run_tasks(stack, api, worker, inputs, verify=False, timeout_s=stack.args.timeout)
        res.update(profile)
        client = stack.client(stack.args.concurrency)
        try:
            res.update(
                await verify_results(stack.db_url, client, res.pop("_ids"), inputs, stack.args.concurrency)
            )
        finally:
            client.close()
        res["failures"] = count_failures(res)
        return res
    finally:
        api.stop()
        worker.stop()


async def w2(stack: Stack, run: int, tag: str) -> dict[str, Any]:
    api, worker = await stack.start(tag)
    try:
        counter = iter(range(10**12))

        def body() -> bytes:
            return b'{"input_data":"w2-' + str(next(counter)).zfill(29).encode() + b'"}'

        roles = {api.pid: "api", worker.pid: "worker", os.getpid(): "load"}
        async with profiled(stack, run, "W2", {"api": api.pid, "worker": worker.pid}) as profile:
            cpu0, machine0 = proc_stats(api.pid), machine_cpu(roles)
            if shutil.which("wrk") and not stack.args.no_wrk:
                res = await run_wrk(stack, stack.base + "/tasks/", tag, BENCH / "wrk" / "post_task.lua")
            else:
                res = await run_builtin_load(stack, "POST", "/tasks/", body)
            cpu1, machine1 = proc_stats(api.pid), machine_cpu(roles)
        res.update(profile)
        res.update(machine_cpu_ms_per(machine0, machine1, res.get("requests") or 0))
        async with await psycopg.AsyncConnection.connect(stack.db_url, autocommit=True) as conn:
            row = await (await conn.execute("SELECT count(*) FROM tasks")).fetchone()
        res["rows_created"] = int(row[0]) if row else 0
        res["api_cpu_ms_per_req"] = cpu_per_task(cpu0, cpu1, res.get("requests") or 0)
        res["queue_handling"] = "worker running during the load (the queue drains); emptied afterwards"
        return res
    finally:
        api.stop()
        worker.stop()


async def w3(stack: Stack, run: int, tag: str) -> dict[str, Any]:
    api, worker = await stack.start(tag)
    try:
        client = stack.client(1)
        try:
            status, body = await client.post_json(
                "/tasks/", b'{"input_data":"w3-probe-xxxxxxxxxxxxxxxxxxxxxxx"}'
            )
            if status != 201:
                raise RuntimeError(f"W3 probe submit answered {status}: {body[:200]!r}")
            tid = msgspec.json.decode(body)["id"]
            deadline = time.monotonic() + 30
            while True:
                status, body = await client.get(f"/tasks/{tid}")
                if status == 200 and msgspec.json.decode(body).get("status") == "COMPLETED":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("W3 probe task did not complete")
                await asyncio.sleep(0.05)
        finally:
            client.close()
        path = f"/tasks/{tid}"
        async with profiled(stack, run, "W3", {"api": api.pid}) as profile:
            cpu0 = proc_stats(api.pid)
            if shutil.which("wrk") and not stack.args.no_wrk:
                res = await run_wrk(stack, stack.base + path, tag, None)
            else:
                res = await run_builtin_load(stack, "GET", path, lambda: b"")
            cpu1 = proc_stats(api.pid)
        res.update(profile)
        res["api_cpu_ms_per_req"] = cpu_per_task(cpu0, cpu1, res.get("requests") or 0)
        return res
    finally:
        api.stop()
        worker.stop()


# ------------------------------------------------------------------- library paths
class LibClient:
    """``bench/lib_client.py``: the producer of the library workloads, in a process of its own."""

    def __init__(self, stack: Stack, inputs: list[str], bulk: int, log_path: Path) -> None:
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "python"),
                str(BENCH / "lib_client.py"),
                "--bulk",
                str(bulk),
                "--concurrency",
                str(stack.args.concurrency),
            ],
            env=stack.settings(TASKCORE_AUTH="none"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._say(json.dumps(inputs))

    def _say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    async def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line:
            raise RuntimeError(f"the library client exited: {self.proc.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def go(self) -> None:
        self._say("go")

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                self._say("exit")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


async def run_library(stack: Stack, run: int, tag: str, *, n: int, bulk: int) -> dict[str, Any]:
    """N reverse tasks submitted by taskcore used as a library (``service.submit``, or
    ``service.submit_many`` of ``bulk``), run by one worker; every result verified
    in the database. The producer's CPU is the "api" component here."""
    worker = await stack.start_worker(tag)
    inputs = make_inputs(n, seed=run)
    client = LibClient(stack, inputs, bulk, stack.raw / f"lib-{tag}.log")
    try:
        assert (await client.answer()).get("ready")
        base_id = await max_id(stack.db_url)
        roles = {client.proc.pid: "api", worker.pid: "worker", os.getpid(): "load"}
        cpu0 = (proc_stats(client.proc.pid), proc_stats(worker.pid), machine_cpu(roles))
        pids = {"producer": client.proc.pid, "worker": worker.pid}
        async with profiled(stack, run, "bulk" if bulk else "W1-lib", pids) as profile:
            client.go()
            sub = await client.answer()
            done = await wait_final(stack.db_url, sub["submitted"], stack.args.timeout, base_id)
            cpu1 = (proc_stats(client.proc.pid), proc_stats(worker.pid), machine_cpu(roles))
        res: dict[str, Any] = {"n": n, "submit_rate": n / sub["submit_s"], "submit_errors": sub["errors"]}
        res.update(await row_stats(stack.db_url, sub["t0_wall"], base_id))
        res["not_completed"] = sub["submitted"] - done
        if res.get("e2e_s"):
            res["e2e_rate"] = n / res["e2e_s"]
        res["producer_cpu_ms_per_task"] = cpu_per_task(cpu0[0], cpu1[0], sub["submitted"])
        res["worker_cpu_ms_per_task"] = cpu_per_task(cpu0[1], cpu1[1], sub["submitted"])
        res.update(machine_cpu_ms_per(cpu0[2], cpu1[2], sub["submitted"]))
        res["wrong_results"] = await wrong_results(stack.db_url, base_id, inputs)
        res["failures"] = count_failures(res)
        res.update(profile)
        return res
    finally:
        client.close()
        worker.stop()


async def wrong_results(db_url: str, after_id: int, inputs: list[str]) -> int:
    """Rows that are not COMPLETED with an input's reverse (the library path has no ids to map)."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT input #>> '{}', result #>> '{}', status::text FROM tasks WHERE id > %s", (after_id,)
            )
        ).fetchall()
    expected = Counter(inputs)
    right = Counter(text for text, result, status in rows if status == "COMPLETED" and result == text[::-1])
    return sum((expected - right).values())


async def w1_lib(stack: Stack, run: int, tag: str) -> dict[str, Any]:
    return await run_library(stack, run, tag, n=stack.args.n, bulk=0)


async def bulk(stack: Stack, run: int, tag: str) -> dict[str, Any]:
    return await run_library(stack, run, tag, n=stack.args.bulk_n, bulk=stack.args.bulk_batch)


async def delay_bound(stack: Stack, run: int, tag: str) -> dict[str, Any]:
    a = stack.args
    # The handler's default delay (TASKCORE_REVERSE_DELAY_S unset: 5 s).
    env = {"TASKCORE_REVERSE_DELAY_S": None, "TASKCORE_WORKER_CONCURRENCY": str(a.delay_concurrency)}
    api, worker = await stack.start(tag, worker_env=env)
    try:
        inputs = make_inputs(a.delay_n, seed=1000 + run)
        res = await run_tasks(stack, api, worker, inputs, verify=False, timeout_s=a.timeout)
        res.pop("_ids", None)
        async with await psycopg.AsyncConnection.connect(stack.db_url, autocommit=True) as conn:
            spans = await (await conn.execute(
                "SELECT extract(epoch FROM started_at), extract(epoch FROM finished_at) FROM tasks "
                "WHERE started_at IS NOT NULL AND finished_at IS NOT NULL"
            )).fetchall()  # fmt: skip
        events = sorted([(float(s), 1) for s, _ in spans] + [(float(f), -1) for _, f in spans])
        running = peak = 0
        for _, step in events:
            running += step
            peak = max(peak, running)
        delay_s = 5.0
        waves = -(-a.delay_n // a.delay_concurrency)
        res["delay_s"] = delay_s
        res["worker_concurrency"] = a.delay_concurrency
        res["peak_running"] = peak
        res["total_s"] = res.get("e2e_s")
        # Lower bound: the last task cannot finish before it was submitted plus
        # one delay per wave of `concurrency` tasks.
        res["ideal_s"] = max(res["submit_s"] + delay_s, waves * delay_s)
        if res.get("total_s") is not None:
            res["overhead_s"] = res["total_s"] - res["ideal_s"]
        return res
    finally:
        api.stop()
        worker.stop()


async def memory(stack: Stack, run: int, tag: str) -> dict[str, Any]:
    a = stack.args
    api, worker = await stack.start(tag)
    try:
        warm = make_inputs(a.memory_warmup, seed=2000 + run)
        await run_tasks(stack, api, worker, warm, verify=False, timeout_s=a.timeout)
        await asyncio.sleep(a.settle)
        before = {"api": proc_stats(api.pid), "worker": proc_stats(worker.pid)}
        m = a.memory_tasks
        res: dict[str, Any] = {"warmup_tasks": a.memory_warmup, "measured_tasks": m}
        more = await run_tasks(
            stack,
            api,
            worker,
            make_inputs(m, seed=3000 + run),
            verify=False,
            timeout_s=max(a.timeout, m / 20),
        )
        await asyncio.sleep(a.settle)
        after = {"api": proc_stats(api.pid), "worker": proc_stats(worker.pid)}
        res["failures"] = more["failures"]
        res["submit_rate"] = more["submit_rate"]
        res["e2e_rate"] = more.get("e2e_rate")
        for who in ("api", "worker"):
            b, f = before[who].get("rss_mb"), after[who].get("rss_mb")
            res[f"{who}_rss_warm_mb"] = b
            res[f"{who}_rss_after_mb"] = f
            res[f"{who}_hwm_mb"] = after[who].get("hwm_mb")
            if b is not None and f is not None:
                res[f"{who}_growth_mb"] = f - b
                res[f"{who}_growth_kb_per_1k"] = (f - b) * 1024 / (m / 1000)
        return res
    finally:
        api.stop()
        worker.stop()


RUNNERS = {
    "W1": w1,
    "W1-lib": w1_lib,
    "bulk": bulk,
    "W2": w2,
    "W3": w3,
    "delay": delay_bound,
    "memory": memory,
    "soak": soak.soak,
}
ON_REQUEST = ("soak",)  # long: run only when --only names them


# ---------------------------------------------------------------------------- profiling
@asynccontextmanager
async def profiled(
    stack: Stack, run: int, workload: str, pids: dict[str, int]
) -> AsyncIterator[dict[str, Any]]:
    """py-spy on ``pids`` around the block when ``--profile`` (first run only);
    the dict it yields gets ``profiled`` and ``profiles`` for the result."""
    out: dict[str, Any] = {}
    if not (stack.args.profile and run == 1):
        yield out
        return
    profilers = start_profilers(stack, workload, pids)
    try:
        await asyncio.sleep(1.0)  # py-spy attaches
        yield out
        out["profiled"] = True
        out["profiles"] = stop_profilers(profilers)
    finally:
        for _, p in profilers:
            if p.poll() is None:
                p.kill()


def start_profilers(
    stack: Stack, workload: str, pids: dict[str, int]
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    pyspy = str(VENV_BIN / "py-spy") if (VENV_BIN / "py-spy").exists() else shutil.which("py-spy")
    if not pyspy:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    fmt = stack.args.profile_format
    ext = {"speedscope": "speedscope.json", "flamegraph": "svg", "raw": "txt"}[fmt]
    out = []
    for name, pid in pids.items():
        path = BENCH / "results" / f"profile-{workload}-{name}-{stack.args.stamp}.{ext}"
        cmd = [pyspy, "record", "--pid", str(pid), "--rate", "100", "--gil", "--format", fmt, "-o", str(path)]
        log = open(stack.raw / f"py-spy-{workload}-{name}.log", "wb")  # noqa: SIM115
        out.append((str(path), subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
    return out


def stop_profilers(profilers: list[tuple[str, subprocess.Popen[bytes]]]) -> list[str]:
    """Stop py-spy (it writes its output on SIGINT); each profile is also copied
    to the undated name (``profile-W1-worker.svg``), the latest of its kind."""
    for _, p in profilers:
        p.send_signal(signal.SIGINT)
    for _, p in profilers:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
    paths = [path for path, _ in profilers]
    for path in paths:
        dated = Path(path)
        if dated.exists():
            name = re.sub(r"-\d{4}-\d{2}-\d{2}-\d{6}", "", dated.name)
            shutil.copyfile(dated, dated.with_name(name))
    return paths


# ---------------------------------------------------------------------------- report
METRICS: list[tuple[str, str, str, int]] = [
    ("W1", "submit_rate", "submit (tasks/s)", 0),
    ("W1", "e2e_rate", "end-to-end (tasks/s)", 0),
    ("W1", "submit_p50_ms", "POST latency p50 (ms, client)", 1),
    ("W1", "submit_p99_ms", "POST latency p99 (ms, client)", 1),
    ("W1", "wait_p50_ms", "queue wait p50 (ms, created->started)", 1),
    ("W1", "wait_p99_ms", "queue wait p99 (ms)", 1),
    ("W1", "run_p50_ms", "run p50 (ms, started->finished)", 2),
    ("W1", "run_p99_ms", "run p99 (ms)", 2),
    ("W1", "total_p50_ms", "total p50 (ms, created->finished)", 1),
    ("W1", "total_p99_ms", "total p99 (ms)", 1),
    ("W1", "failures", "failures", 0),
    ("W1", "api_cpu_ms_per_task", "API CPU per task (ms)", 2),
    ("W1", "worker_cpu_ms_per_task", "worker CPU per task (ms)", 2),
    *(
        ("W1", f"machine_cpu_ms_{name}", f"machine CPU per task: {name} (ms)", 2)
        for name in (*MACHINE_COMPONENTS, "total")
    ),
    ("W1", "api_rss_mb", "API RSS after (MB)", 0),
    ("W1", "worker_rss_mb", "worker RSS after (MB)", 0),
    ("W1", "verify_get_rate", "verify GETs (req/s, 1 per task)", 0),
    *(
        row
        for w in ("W1-lib", "bulk")
        for row in (
            (w, "submit_rate", "submit (tasks/s)", 0),
            (w, "e2e_rate", "end-to-end (tasks/s)", 0),
            (w, "wait_p50_ms", "queue wait p50 (ms, created->started)", 1),
            (w, "wait_p99_ms", "queue wait p99 (ms)", 1),
            (w, "total_p50_ms", "total p50 (ms, created->finished)", 1),
            (w, "total_p99_ms", "total p99 (ms)", 1),
            (w, "failures", "failures", 0),
            (w, "producer_cpu_ms_per_task", "producer CPU per task (ms)", 2),
            (w, "worker_cpu_ms_per_task", "worker CPU per task (ms)", 2),
            *(
                (w, f"machine_cpu_ms_{name}", f"machine CPU per task: {name} (ms)", 2)
                for name in (*MACHINE_COMPONENTS, "total")
            ),
        )
    ),
    ("W2", "req_s", "POST (req/s)", 0),
    ("W2", "p50_ms", "POST p50 (ms)", 1),
    ("W2", "p99_ms", "POST p99 (ms)", 1),
    ("W2", "non2xx", "POST non-2xx", 0),
    ("W2", "api_cpu_ms_per_req", "API CPU per POST (ms)", 2),
    *(
        ("W2", f"machine_cpu_ms_{name}", f"machine CPU per POST: {name} (ms)", 2)
        for name in (*MACHINE_COMPONENTS, "total")
    ),
    ("W3", "req_s", "GET (req/s)", 0),
    ("W3", "p50_ms", "GET p50 (ms)", 1),
    ("W3", "p99_ms", "GET p99 (ms)", 1),
    ("W3", "non2xx", "GET non-2xx", 0),
    ("W3", "api_cpu_ms_per_req", "API CPU per GET (ms)", 2),
    ("delay", "total_s", "all done (s)", 2),
    ("delay", "ideal_s", "lower bound (s)", 2),
    ("delay", "overhead_s", "over the bound (s)", 2),
    ("delay", "run_p99_ms", "run p99 (ms)", 0),
    ("delay", "wait_p99_ms", "queue wait p99 (ms)", 0),
    ("delay", "peak_running", "peak running at once", 0),
    ("delay", "failures", "failures", 0),
    ("memory", "api_rss_warm_mb", "API RSS after warm-up (MB)", 1),
    ("memory", "api_rss_after_mb", "API RSS after M more (MB)", 1),
    ("memory", "api_growth_kb_per_1k", "API growth (KB per 1k tasks)", 0),
    ("memory", "worker_rss_warm_mb", "worker RSS after warm-up (MB)", 1),
    ("memory", "worker_rss_after_mb", "worker RSS after M more (MB)", 1),
    ("memory", "worker_growth_kb_per_1k", "worker growth (KB per 1k tasks)", 0),
    ("memory", "failures", "failures", 0),
    ("soak", "submit_rate", "submit (tasks/s)", 0),
    ("soak", "e2e_rate", "end-to-end (tasks/s)", 0),
    ("soak", "rows_steady_first", "rows, steady: first sample", 0),
    ("soak", "rows_steady_last", "rows, steady: last sample", 0),
    ("soak", "rows_steady_max", "rows, steady: max", 0),
    ("soak", "total_mb_steady_first", "table + indexes (MB), steady: first", 1),
    ("soak", "total_mb_steady_last", "table + indexes (MB), steady: last", 1),
    ("soak", "total_mb_steady_max", "table + indexes (MB), steady: max", 1),
    ("soak", "indexes_mb_steady_first", "indexes (MB), steady: first", 1),
    ("soak", "indexes_mb_steady_last", "indexes (MB), steady: last", 1),
    ("soak", "wait_p50_ms_steady_first", "queue wait p50 (ms), steady: first", 1),
    ("soak", "wait_p50_ms_steady_last", "queue wait p50 (ms), steady: last", 1),
    ("soak", "wait_p99_ms_steady_median", "queue wait p99 (ms), steady: median", 1),
    ("soak", "claim_probe_ms_steady_first", "claim statement (ms), steady: first", 2),
    ("soak", "claim_probe_ms_steady_last", "claim statement (ms), steady: last", 2),
    ("soak", "mb_per_100k_tasks_kept", "MB per 100k tasks kept (no pruning yet)", 1),
    ("soak", "pruned_total", "pruned by the sweeper", 0),
    ("soak", "rows_left", "rows left after the tail", 0),
    ("soak", "failures", "failures", 0),
]


def fmt(s: dict[str, float] | None, digits: int) -> str:
    if s is None:
        return "-"
    f = f"{{:.{digits}f}}"
    if s["runs"] == 1:
        return f.format(s["median"])
    return f"{f.format(s['median'])} [{f.format(s['min'])}-{f.format(s['max'])}]"


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    rows = [("workload", "metric", "median [min-max]")]
    for w, key, label, digits in METRICS:
        s = summary.get(w, {}).get(key)
        if s is not None:
            rows.append((w, label, fmt(s, digits)))
    w0 = max(len(r[0]) for r in rows)
    w1_ = max(len(r[1]) for r in rows)
    line = "-" * (w0 + w1_ + 28)
    print(line)
    for i, (a, b, c) in enumerate(rows):
        print(f"{a:<{w0}}  {b:<{w1_}}  {c}")
        if i == 0:
            print(line)
    print(line)


def git_info() -> dict[str, Any]:
    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    return {
        "head": out("git", "rev-parse", "HEAD"),
        "dirty": out("git", "status", "--porcelain").splitlines(),
    }


def service_versions(stack: Stack) -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0]}
    try:
        with psycopg.connect(stack.db_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            out["postgresql"] = row[0] if row else None
    except Exception:
        pass
    try:
        import redis

        client = redis.from_url(stack.services.redis_url)
        out["redis"] = client.info("server").get("redis_version")
        client.close()
    except Exception:
        pass
    if shutil.which("wrk"):
        out["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    import importlib.metadata as md

    for pkg in ("taskcore", "litestar", "uvicorn", "psycopg", "aio-pika", "redis", "msgspec", "uvloop"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


# ------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="W1 task count (default 5000)")
    ap.add_argument(
        "--runs",
        type=int,
        default=3,
        help="runs per workload; the table shows the median (default 3; memory runs once)",
    )
    ap.add_argument(
        "--only", default="", help=f"comma list of workloads: {','.join(WORKLOADS)} (default: all)"
    )
    ap.add_argument(
        "--concurrency", type=int, default=64, help="requests in flight: W1 submits, wrk -c (default 64)"
    )
    ap.add_argument("--duration", type=int, default=15, help="W2/W3 seconds (default 15)")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument(
        "--no-wrk",
        action="store_true",
        help="use the built-in asyncio client for W2/W3 even if wrk is installed",
    )
    ap.add_argument("--bulk-n", type=int, default=100_000, help="bulk task count (default 100000)")
    ap.add_argument("--bulk-batch", type=int, default=500, help="tasks per submit_many (default 500)")
    ap.add_argument("--delay-n", type=int, default=1000, help="delay-bound task count (default 1000)")
    ap.add_argument(
        "--delay-concurrency",
        type=int,
        default=1000,
        help="worker concurrency for delay-bound (default 1000)",
    )
    ap.add_argument("--memory-warmup", type=int, default=2000)
    ap.add_argument(
        "--memory-tasks", type=int, default=20000, help="M, tasks after the warm-up (default 20000)"
    )
    ap.add_argument("--memory-full", action="store_true", help="M = 100000")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading RSS")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for tasks to finish")
    ap.add_argument("--ready-timeout", type=float, default=60)
    ap.add_argument("--port", type=int, default=8015, help="API port (default 8015)")
    ap.add_argument(
        "--db-name", default="taskcore_bench", help="database; also the queue name and key prefix stem"
    )
    ap.add_argument(
        "--no-reinstall", action="store_true", help="do not run `make install` before starting servers"
    )
    ap.add_argument(
        "--keep-rate-limit",
        action="store_true",
        help="keep the default submit rate limit (otherwise 0 = off)",
    )
    ap.add_argument(
        "--set", action="append", default=[], metavar="TASKCORE_X=V", help="extra setting for both processes"
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record API and worker during W1 run 1 (not verified, not in the summary)",
    )
    ap.add_argument("--profile-format", default="speedscope", choices=["speedscope", "flamegraph", "raw"])
    ap.add_argument("--out", help="JSON path (default bench/results/<date>.json)")
    soak.add_arguments(ap)
    args = ap.parse_args(argv)
    if args.memory_full:
        args.memory_tasks = 100_000
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    lookup = {w.lower(): w for w in (*WORKLOADS, *ON_REQUEST)}
    bad = [w for w in only if w.lower() not in lookup]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {', '.join((*WORKLOADS, *ON_REQUEST))}")
    args.workloads = [lookup[w.lower()] for w in only] if only else list(WORKLOADS)
    args.stamp = datetime.now().strftime("%Y-%m-%d-%H%M%S")
    return args


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results_dir = BENCH / "results"
    raw = results_dir / "raw" / args.stamp
    raw.mkdir(parents=True, exist_ok=True)
    out_path = Path(args.out) if args.out else results_dir / f"{args.stamp}.json"
    logf = open(raw / "run.log", "w")  # noqa: SIM115, ASYNC230 - before any load, open for the whole run

    def log(msg: str) -> None:
        line = f"[{datetime.now().strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr, flush=True)
        logf.write(line + "\n")
        logf.flush()

    stack = Stack(args, raw)
    await asyncio.to_thread(stack.prepare)
    log(f"database {stack.db_name}, queue {stack.queue}, prefix {stack.prefix}, API {stack.base}")
    log(f"raw output in {raw}")
    params = {k: v for k, v in vars(args).items() if k not in ("stamp",)}
    doc: dict[str, Any] = {
        "date": args.stamp,
        "preliminary_note": "shared 2-core machine; other work ran at the same time",
        "machine": {"cpus": os.cpu_count(), "uname": os.uname().release, "loadavg_start": os.getloadavg()},
        "params": params,
        "settings": {
            k: ("<secret>" if "SECRET" in k else v)
            for k, v in stack.settings().items()
            if k.startswith("TASKCORE_")
        },
        "git": git_info(),
        "versions": service_versions(stack),
        "workloads": {},
    }
    runs: dict[str, list[dict[str, Any]]] = {w: [] for w in args.workloads}
    for run in range(1, args.runs + 1):
        for w in args.workloads:
            if w in ("memory", "soak") and run > 1:
                continue
            tag = f"{w}-r{run}"
            await stack.reset()
            load = os.getloadavg()[0]
            log(f"{tag}: starting (load average {load:.2f})")
            try:
                res = await RUNNERS[w](stack, run, tag)
            except Exception as exc:
                res = {"error": f"{type(exc).__name__}: {exc}"}
            res["loadavg_1m"] = load
            runs[w].append(res)
            if res.get("samples"):
                log(f"{tag} samples:\n{soak.print_samples(res['samples'])}")
            log(f"{tag}: {json.dumps(res, default=str)}")
    await stack.reset()
    summary: dict[str, dict[str, Any]] = {}
    for w, rs in runs.items():
        # A profiled run is slowed by the sampling: left out unless it is all there is.
        counted = [r for r in rs if not r.get("profiled")] or rs
        keys = {
            k
            for r in counted
            for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        summary[w] = {k: summarize([r.get(k) for r in counted]) for k in sorted(keys)}
        errors = [r["error"] for r in rs if "error" in r]
        if errors:
            summary[w]["errors"] = errors
        doc["workloads"][w] = {"runs": rs, "summary": summary[w]}
    doc["machine"]["loadavg_end"] = os.getloadavg()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=2, default=str))
    print_table(summary)
    problems = [(w, e) for w, s in summary.items() for e in s.get("errors", [])]
    problems += [
        (w, f"{int(s['failures']['max'])} failures")
        for w, s in summary.items()
        if s.get("failures") and s["failures"]["max"]
    ]
    for w, e in problems:
        print(f"ERROR {w}: {e}")
    print(f"JSON: {out_path}")
    print(f"raw:  {raw}")
    return 1 if problems else 0


if __name__ == "__main__":
    print(f"event loop: {install_uvloop()}", file=sys.stderr)
    sys.exit(asyncio.run(main()))
