"""The retention soak (``make bench BENCH_ARGS="--runs 1 --only soak"``): does the task table stay flat?

A table that keeps every task grows by the whole flow (86 million rows a day
at 1,000 tasks/s) and with it its indexes and the cost of every claim. With
retention the sweepers delete what finished more than TASKCORE_RETENTION_S
ago, so under a steady flow the table should level off at that many seconds
of work (plus what autovacuum has not yet reclaimed) and stay there.

This pushes ``--soak-n`` (200,000) reverse tasks through one API and one
worker, over HTTP with the bearer token as users do (not the library path:
the API's share of the machine is part of what the flow costs, and the
pruning competes with it for the same two cores), with
``TASKCORE_RETENTION_S=--soak-retention`` (30) and
``TASKCORE_SWEEP_INTERVAL_S=--soak-sweep`` (1) on the worker. Every
``--soak-sample`` seconds (10) it records:

* the table: rows, heap (``pg_relation_size``), indexes (``pg_indexes_size``),
  everything (``pg_total_relation_size``: heap, indexes, TOAST, free space
  and visibility maps), and from ``pg_stat_user_tables`` the dead tuples and
  how many times autovacuum has run;
* claim latency two ways: the queue wait (created_at -> started_at, the
  claim) of the tasks that started since the last sample, p50/p99, from
  their rows before retention takes them; and a probe that times the
  worker's own claim statement (``claim_tasks`` from queries.sql) for the 64
  newest ids, 20 times in a transaction rolled back (they are finished, so
  it claims nothing: it is the lookup a claim pays for, on the table as it is);
* the worker's ``taskcore_tasks_pruned_total``.

It keeps sampling ``--soak-tail`` seconds (90) after the last task finished,
so the table is seen emptied by retention. Sizes never shrink without
VACUUM FULL: flat means the space freed by deletions is reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from typing import Any

import psycopg
from harness import HttpClient, free_port, make_inputs, percentile

from taskcore.adapters.postgres.sql import queries

MB = 1024 * 1024
PROBE_IDS = 64
PROBE_RUNS = 20
AUTOVACUUM_SETTINGS = (
    "autovacuum",
    "autovacuum_naptime",
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_threshold",
    "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_vacuum_cost_limit",
    "autovacuum_vacuum_cost_delay",
    "shared_buffers",
    "server_version",
)

SIZES = """
SELECT pg_total_relation_size('tasks'), pg_relation_size('tasks'), pg_indexes_size('tasks'),
       (SELECT count(*) FROM tasks),
       (SELECT count(*) FROM tasks WHERE status IN ('PENDING', 'PROCESSING')),
       s.n_dead_tup, s.autovacuum_count, s.vacuum_count, s.autoanalyze_count
FROM pg_stat_user_tables s WHERE s.relid = 'tasks'::regclass
"""

INDEXES = """
SELECT indexrelid::regclass::text, pg_relation_size(indexrelid)
FROM pg_index WHERE indrelid = 'tasks'::regclass
"""

WAITS = """
SELECT count(*),
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at))
FROM tasks WHERE started_at >= %s AND started_at < %s
"""


def add_arguments(ap: Any) -> None:
    ap.add_argument("--soak-n", type=int, default=200_000, help="soak: tasks pushed through (default 200000)")
    ap.add_argument(
        "--soak-retention",
        type=float,
        default=30,
        help="soak: TASKCORE_RETENTION_S of the worker (default 30)",
    )
    ap.add_argument(
        "--soak-sweep",
        type=float,
        default=1,
        help="soak: TASKCORE_SWEEP_INTERVAL_S of the worker (default 1)",
    )
    ap.add_argument(
        "--soak-sample", type=float, default=10, help="soak: seconds between samples (default 10)"
    )
    ap.add_argument(
        "--soak-tail", type=float, default=90, help="soak: seconds sampled after the last task (default 90)"
    )


async def server_settings(db_url: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                (list(AUTOVACUUM_SETTINGS),),
            )
        ).fetchall()
    return dict(rows)


async def worker_counter(port: int, name: str) -> float | None:
    """A counter from the worker's /metrics, its series summed (None if it does not answer)."""
    client = HttpClient(f"http://127.0.0.1:{port}", 1)
    try:
        status, body = await client.get("/metrics")
    except OSError:
        return None
    finally:
        client.close()
    if status != 200:
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line.startswith((name + " ", name + "{"))
    ]
    return sum(values) if values else None


class Sampler:
    """Reads the table every ``every`` seconds on a connection of its own."""

    def __init__(self, db_url: str, every: float, metrics_port: int) -> None:
        self.db_url = db_url
        self.every = every
        self.metrics_port = metrics_port
        self.samples: list[dict[str, Any]] = []
        self.submitted = 0  # updated by the submitters
        self.t0 = time.time()

    async def run(self, stop: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(self.db_url, autocommit=True) as conn:
            since = time.time()
            while True:
                stopped = stop.is_set()
                self.samples.append(await self.sample(conn, since))
                since = self.samples[-1]["_at"]
                if stopped:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.every)

    async def sample(self, conn: psycopg.AsyncConnection[Any], since: float) -> dict[str, Any]:
        at = time.time()
        row = await (await conn.execute(SIZES)).fetchone()
        assert row is not None
        total, heap, indexes, rows, unfinished, dead, autovacuums, vacuums, autoanalyzes = row
        waits = await (await conn.execute(WAITS, (_stamp(since), _stamp(at)))).fetchone()
        started, wait = waits if waits else (0, None)
        return {
            "_at": at,
            "t_s": round(at - self.t0, 1),
            "submitted": self.submitted,
            "rows": rows,
            "unfinished": unfinished,
            "total_mb": total / MB,
            "table_mb": heap / MB,
            "indexes_mb": indexes / MB,
            "dead_tuples": dead,
            "autovacuums": autovacuums,
            "vacuums": vacuums,
            "autoanalyzes": autoanalyzes,
            "started_in_window": started,
            "wait_p50_ms": float(wait[0]) * 1000 if wait and wait[0] is not None else None,
            "wait_p99_ms": float(wait[1]) * 1000 if wait and wait[1] is not None else None,
            "claim_probe_ms": await claim_probe(conn),
            "pruned": await worker_counter(self.metrics_port, "taskcore_tasks_pruned_total"),
            "index_mb": {name: size / MB for name, size in await (await conn.execute(INDEXES)).fetchall()},
        }


def _stamp(epoch: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)


async def claim_probe(conn: psycopg.AsyncConnection[Any]) -> float | None:
    """Median ms of the worker's claim statement for the newest ids (finished:
    nothing is claimed), in a transaction rolled back."""
    rows = await (
        await conn.execute(
            "SELECT id FROM tasks WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT %s", (PROBE_IDS,)
        )
    ).fetchall()
    if not rows:
        return None
    params = {
        "ids": [r[0] for r in rows],
        "alone": [],
        "now": _stamp(time.time()),
        "lease_until": _stamp(time.time() + 30),
    }
    timings = []
    async with conn.transaction(force_rollback=True):
        for _ in range(PROBE_RUNS):
            t = time.perf_counter()
            await conn.execute(queries["claim_tasks"], params)
            timings.append((time.perf_counter() - t) * 1000)
    return statistics.median(timings)


async def submit_steadily(client: HttpClient, n: int, c: int, sampler: Sampler) -> dict[str, Any]:
    """``c`` closed-loop submitters until ``n`` tasks were accepted (random 32-char inputs)."""
    inputs = iter(make_inputs(n, seed=4242))
    latencies: list[float] = []
    errors = 0

    async def submitter() -> None:
        nonlocal errors
        for text in inputs:
            body = b'{"input_data":"' + text.encode() + b'"}'
            t = time.perf_counter()
            try:
                status, _ = await client.post_json("/tasks/", body)
            except Exception:
                errors += 1
                continue
            if status == 201:
                latencies.append(time.perf_counter() - t)
                sampler.submitted += 1
            else:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(c)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "submit_s": elapsed,
        "submit_rate": len(latencies) / elapsed,
        "submit_errors": errors,
        "submit_p50_ms": (percentile(latencies, 0.5) or 0) * 1000,
        "submit_p99_ms": (percentile(latencies, 0.99) or 0) * 1000,
    }


async def wait_unfinished_zero(db_url: str, timeout_s: float) -> float:
    """Until no task is PENDING or PROCESSING (finished ones are pruned, so count those left)."""
    deadline = time.monotonic() + timeout_s
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while True:
            row = await (
                await conn.execute("SELECT count(*) FROM tasks WHERE status IN ('PENDING', 'PROCESSING')")
            ).fetchone()
            if (row and row[0] == 0) or time.monotonic() > deadline:
                return time.time()
            await asyncio.sleep(0.2)


def summarise(samples: list[dict[str, Any]], retention_s: float, flow_end: float) -> dict[str, Any]:
    """Start vs end of the steady part (from twice the retention after the
    start, when pruning has caught up, to the end of the flow), and the peak."""
    flow = [s for s in samples if s["_at"] <= flow_end]
    steady = [s for s in flow if s["t_s"] >= 2 * retention_s + 30] or flow
    out: dict[str, Any] = {"steady_samples": len(steady)}
    if not steady:
        return out
    first, last = steady[0], steady[-1]
    for key in (
        "rows",
        "total_mb",
        "table_mb",
        "indexes_mb",
        "dead_tuples",
        "wait_p50_ms",
        "wait_p99_ms",
        "claim_probe_ms",
    ):
        values = [s[key] for s in steady if s.get(key) is not None]
        out[f"{key}_steady_first"] = first.get(key)
        out[f"{key}_steady_last"] = last.get(key)
        out[f"{key}_steady_max"] = max(values) if values else None
        out[f"{key}_steady_median"] = statistics.median(values) if values else None
    out["steady_from_s"] = first["t_s"]
    out["steady_to_s"] = last["t_s"]
    # Before anything could be pruned the table holds every task so far: bytes a task costs kept.
    young = [s for s in samples if s["t_s"] <= retention_s and s["rows"] > 1000]
    if young:
        probe = young[-1]
        out["mb_per_100k_tasks_kept"] = probe["total_mb"] / probe["rows"] * 100_000
    return out


async def soak(stack: Any, run: int, tag: str) -> dict[str, Any]:
    a = stack.args
    port = free_port()
    env = {
        "TASKCORE_RETENTION_S": f"{a.soak_retention:g}",
        "TASKCORE_SWEEP_INTERVAL_S": f"{a.soak_sweep:g}",
        "TASKCORE_WORKER_METRICS_PORT": str(port),
    }
    api, worker = await stack.start(tag, worker_env=env)
    stop = asyncio.Event()
    sampler = Sampler(stack.db_url, a.soak_sample, port)
    sampling = asyncio.create_task(sampler.run(stop))
    client = stack.client(a.concurrency)
    try:
        res: dict[str, Any] = {"n": a.soak_n, "server": await server_settings(stack.db_url)}
        res.update(await submit_steadily(client, a.soak_n, a.concurrency, sampler))
        flow_end = await wait_unfinished_zero(stack.db_url, a.timeout)
        res["e2e_rate"] = a.soak_n / (flow_end - sampler.t0)
        await asyncio.sleep(a.soak_tail)
        stop.set()
        await sampling
        samples = sampler.samples
        res["completed"] = await worker_counter(port, "taskcore_tasks_completed_total")
        res["pruned_total"] = samples[-1]["pruned"]
        res["rows_left"] = samples[-1]["rows"]
        res["total_mb_after_tail"] = samples[-1]["total_mb"]
        res["flow_s"] = flow_end - sampler.t0
        res.update(summarise(samples, a.soak_retention, flow_end))
        res["samples"] = [{k: v for k, v in s.items() if not k.startswith("_")} for s in samples]
        res["failures"] = res["submit_errors"] + (0 if res["completed"] == a.soak_n else 1)
        return res
    finally:
        stop.set()
        if not sampling.done():
            sampling.cancel()
        client.close()
        api.stop()
        worker.stop()


COLUMNS = (  # (title, key, digits)
    ("t (s)", "t_s", 0),
    ("submitted", "submitted", 0),
    ("rows", "rows", 0),
    ("total MB", "total_mb", 1),
    ("heap MB", "table_mb", 1),
    ("index MB", "indexes_mb", 1),
    ("dead", "dead_tuples", 0),
    ("autovac", "autovacuums", 0),
    ("wait p50", "wait_p50_ms", 1),
    ("wait p99", "wait_p99_ms", 1),
    ("probe ms", "claim_probe_ms", 2),
    ("pruned", "pruned", 0),
)


def print_samples(samples: list[dict[str, Any]]) -> str:
    """The samples as a text table, for the run log."""

    def cell(sample: dict[str, Any], key: str, digits: int) -> str:
        value = sample.get(key)
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [" ".join(f"{title:>9}" for title, _, _ in COLUMNS)]
    for sample in samples:
        lines.append(" ".join(f"{cell(sample, key, digits):>9}" for _, key, digits in COLUMNS))
    return "\n".join(lines)
