"""What the attempt log costs the claim and the verdict: 20,000-row UPDATEs, with and without.

    .venv/bin/python bench/attempt_log.py [postgresql://postgres@127.0.0.1:5432/postgres]

Creates a scratch database from ``schema.sql`` with 20,000 PENDING tasks, then
times, in alternating order and each in a rolled-back transaction (VACUUM
between), the claim as ``claim_tasks`` sets it with and without its
``attempt_log`` append, and the verdict as ``save_tasks`` sends it (the
columns from unnest'ed arrays) with and without the log's jsonb per row.
Prints the fastest and the median of 11 runs (the first is a warm-up).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb

SERVER = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "taskcore_bench_attempt_log"
SCHEMA = (Path(__file__).parents[1] / "src/adapters/postgres/schema.sql").read_text()
N = 20_000
RUNS = 12

CLAIM = """UPDATE tasks SET status = 'PROCESSING', attempts = attempts + 1,
 lease_until = now() + interval '30 s', started_at = now(), updated_at = now(),
 version = version + 1, alone = false, progress = NULL,
 progress_message = NULL, progress_at = NULL {log} WHERE status = 'PENDING'"""
CLAIM_LOG = """, attempt_log
 = CASE WHEN jsonb_array_length(attempt_log) >= 20 THEN attempt_log - 0 ELSE attempt_log END
 || jsonb_build_array(jsonb_build_object('number', attempts + 1, 'claimed_at', now()))"""
VERDICT = """UPDATE tasks AS t SET status = 'COMPLETED', result = v.result, lease_until = NULL,
 finished_at = now(), updated_at = now(), version = t.version + 1 {log}
 FROM unnest(%(ids)s::bigint[], %(results)s::jsonb[], %(logs)s::jsonb[]) AS v(id, result, attempt_log)
 WHERE t.id = v.id"""
VERDICT_LOG = ", attempt_log = v.attempt_log"
ENTRY = [
    {
        "number": 1,
        "claimed_at": "2026-12-05T19:20:00.123456Z",
        "ended_at": "2026-12-05T19:20:00.223456Z",
        "outcome": "COMPLETED",
    }
]


def timed(connection: psycopg.Connection[Any], sql: str, params: dict[str, Any] | None = None) -> float:
    started = time.perf_counter()
    connection.execute(sql.encode(), params)  # built from the constants above only
    return (time.perf_counter() - started) * 1000


def main() -> None:
    with psycopg.connect(SERVER, autocommit=True) as server:
        server.execute(f"DROP DATABASE IF EXISTS {DB}".encode())
        server.execute(f"CREATE DATABASE {DB}".encode())
    try:
        with psycopg.connect(SERVER.rsplit("/", 1)[0] + "/" + DB, autocommit=True) as c:
            c.execute(SCHEMA.encode())
            insert: LiteralString = (
                "INSERT INTO tasks (type, input, status, attempts, max_attempts, version, created_at,"
                " updated_at, run_at) SELECT 'echo', jsonb_build_object('n', g), 'PENDING', 0, 3, 1,"
                " now(), now(), now()"
                " FROM generate_series(1, %s) g"
            )
            c.execute(insert, (N,))
            ids = [row[0] for row in c.execute("SELECT id FROM tasks ORDER BY id").fetchall()]
            verdict = {"ids": ids, "results": [Jsonb("done")] * N, "logs": [Jsonb(ENTRY)] * N}
            times: dict[str, list[float]] = {k: [] for k in ("claim", "claim+log", "verdict", "verdict+log")}
            for run in range(RUNS):
                for name in ("claim", "claim+log") if run % 2 else ("claim+log", "claim"):
                    with c.transaction(force_rollback=True):
                        times[name].append(timed(c, CLAIM.format(log=CLAIM_LOG if "log" in name else "")))
                    c.execute("VACUUM tasks")
                for name in ("verdict", "verdict+log") if run % 2 else ("verdict+log", "verdict"):
                    with c.transaction(force_rollback=True):
                        c.execute(CLAIM.format(log=CLAIM_LOG).encode())
                        sql = VERDICT.format(log=VERDICT_LOG if "log" in name else "")
                        times[name].append(timed(c, sql, verdict))
                    c.execute("VACUUM tasks")
            for name, runs in times.items():
                kept = runs[1:]
                print(f"{name:12s} fastest {min(kept):6.0f} ms, median {statistics.median(kept):6.0f} ms")
    finally:
        with psycopg.connect(SERVER, autocommit=True) as server:
            server.execute(f"DROP DATABASE IF EXISTS {DB}".encode())


if __name__ == "__main__":
    main()
