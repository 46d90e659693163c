#!/usr/bin/env python3
"""CI regression guard for the submit path and the library path (``.ci/bench_guard``; about a minute).

In one process, on the same event loop and the same services, alternating in
rounds so that machine noise hits both sides alike:

submit (``--path submit``)
  ours  N concurrent ``TaskService.submit("reverse", ...)`` through the real
        container and adapters (validation, INSERT ... RETURNING the row,
        publish with confirm, cache write-through, batched dispatched_at);
  raw   the same durable work by hand: psycopg INSERT of a row into the same
        table from a pool of the same size, then an aio-pika publish with
        publisher confirms to the same queue, at the same concurrency.

library, end to end (``--path e2e``)
  ours  taskcore used as a library: the same N submits, and the container's
        ``Worker`` in the same process running them until every row is final;
  raw   the same by hand: the INSERT and the confirmed publish, and an
        aio-pika consumer (prefetch 128) that completes each row with one
        guarded UPDATE and acks after it.

It prints both rates and the ratio raw/ours (how many times slower our path is
than the hand-written floor), and fails (exit 1) only when a ratio is worse
than ``--tolerance`` (2) times the one recorded in
``bench/guard_baseline.json``. Absolute rates are never asserted: CI machines
differ, the ratio mostly does not. Exit 2: the guard could not measure
(services unreachable, no baseline).

    .ci/bench_guard                  # measure both paths and compare
    .ci/bench_guard --record         # measure and write the baselines
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BENCH,
    Services,
    delete_keys,
    delete_queues,
    drop_database,
    ensure_database,
    install_uvloop,
    make_inputs,
)

BASELINE = BENCH / "guard_baseline.json"

RAW_INSERT = """
INSERT INTO tasks (type, input, status, attempts, max_attempts, version, created_at, updated_at, run_at)
VALUES ('reverse', %s, 'PENDING', 0, 3, 1, now(), now(), now())
RETURNING id
"""
RAW_COMPLETE = """
UPDATE tasks
SET status = 'COMPLETED', result = to_jsonb(reverse(input #>> '{}')), attempts = 1, version = version + 1,
    updated_at = now(), finished_at = now()
WHERE id = %s AND status = 'PENDING'
"""
FINAL = "SELECT count(*) FROM tasks WHERE id > %s AND status IN ('COMPLETED', 'FAILED', 'CANCELLED')"


async def until_final(pool: Any, after_id: int, n: int, timeout_s: float = 120) -> None:
    """Poll the table until ``n`` rows above ``after_id`` are final."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with pool.connection() as conn:
            row = await (await conn.execute(FINAL, (after_id,))).fetchone()
        if row is not None and row[0] >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {row[0] if row else 0} of {n} tasks final after {timeout_s:.0f} s")
        await asyncio.sleep(0.005)


async def last_id(pool: Any) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT coalesce(max(id), 0) FROM tasks")).fetchone()
    return int(row[0]) if row else 0


async def timed(submit: Callable[[str], Awaitable[Any]], inputs: list[str], concurrency: int) -> float:
    """Submits per second for ``inputs`` with ``concurrency`` in flight."""
    it = iter(inputs)

    async def worker() -> None:
        for text in it:
            await submit(text)

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(inputs) / (time.perf_counter() - t)


async def measure(args: argparse.Namespace, services: Services, name: str, db_url: str) -> dict[str, Any]:
    import aio_pika
    from psycopg.types.json import Jsonb
    from psycopg_pool import AsyncConnectionPool

    from taskcore.entrypoints.container import build_container
    from taskcore.entrypoints.lifecycle import open_resources
    from taskcore.entrypoints.loading import load_registry
    from taskcore.entrypoints.settings import load_settings

    queue = f"{name}.tasks"
    settings = load_settings(
        {
            "TASKCORE_DATABASE_URL": db_url,
            "TASKCORE_REDIS_URL": services.redis_url,
            "TASKCORE_AMQP_URL": services.amqp_url,
            "TASKCORE_QUEUE_NAME": queue,
            "TASKCORE_CACHE_PREFIX": f"{name}:",
            "TASKCORE_REVERSE_DELAY_S": "0",
            "TASKCORE_LOG_LEVEL": "WARNING",
        }
    )
    container = build_container(settings, load_registry(None, reverse_delay_s=0))
    async with open_resources(container):  # declares the queue, as the API does
        service = container.service()
        pool = AsyncConnectionPool(
            db_url,
            min_size=settings.database_pool_size,
            max_size=settings.database_pool_size,
            kwargs={"autocommit": True},
            open=False,
        )
        await pool.open(wait=True, timeout=10)
        connection = await aio_pika.connect(services.amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True)

            async def ours(text: str) -> None:
                await service.submit("reverse", text)

            async def raw_consumer() -> Any:
                """The floor's worker: one guarded UPDATE per message, ack after it."""
                consuming = await connection.channel()
                await consuming.set_qos(prefetch_count=128)
                raw_queue = await consuming.declare_queue(f"{queue}.raw", durable=True)

                async def on_message(message: Any) -> None:
                    async with pool.connection() as conn:
                        await conn.execute(RAW_COMPLETE, (int(message.body),))
                    await message.ack()

                await raw_queue.consume(on_message)
                return consuming

            async def raw_publish_to(routing_key: str, text: str) -> None:
                async with pool.connection() as conn:
                    cursor = await conn.execute(RAW_INSERT, (Jsonb(text),))
                    row = await cursor.fetchone()
                assert row is not None
                await channel.default_exchange.publish(
                    aio_pika.Message(str(row[0]).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=routing_key,
                )

            def end_to_end(
                submit: Callable[[str], Awaitable[Any]],
            ) -> Callable[[list[str], int], Awaitable[float]]:
                async def run(inputs: list[str], concurrency: int) -> float:
                    after = await last_id(pool)
                    t = time.perf_counter()
                    await timed(submit, inputs, concurrency)
                    await until_final(pool, after, len(inputs))
                    return len(inputs) / (time.perf_counter() - t)

                return run

            async def raw(text: str) -> None:
                await raw_publish_to(queue, text)

            async def raw_e2e(text: str) -> None:
                await raw_publish_to(f"{queue}.raw", text)

            if args.path == "e2e":
                worker = container.worker()
                working = asyncio.create_task(worker.run())
                raw_channel = await raw_consumer()
                timers = {"ours": end_to_end(ours), "raw": end_to_end(raw_e2e)}
            else:
                timers = {
                    "ours": lambda inputs, c: timed(ours, inputs, c),
                    "raw": lambda inputs, c: timed(raw, inputs, c),
                }
            c = args.concurrency
            for (
                side,
                timer,
            ) in timers.items():  # warm-up: connections, caches, JIT-free but import-heavy paths
                await timer(make_inputs(args.warmup, seed=hash(side) & 0xFFFF), c)
            rounds: list[dict[str, float]] = []
            started = time.monotonic()
            for r in range(args.rounds):
                order = ["ours", "raw"] if r % 2 == 0 else ["raw", "ours"]
                rates = {}
                for side in order:
                    rates[side] = await timers[side](make_inputs(args.n, seed=r * 2 + (side == "raw")), c)
                rates["ratio"] = rates["raw"] / rates["ours"]
                rounds.append(rates)
                print(
                    f"  round {r + 1}: taskcore {rates['ours']:7.0f}/s   raw {rates['raw']:7.0f}/s   "
                    f"ratio {rates['ratio']:.2f}",
                    flush=True,
                )
                if time.monotonic() - started > args.budget_s and len(rounds) >= 2:
                    print(f"  (stopping after {len(rounds)} rounds: over the {args.budget_s:.0f} s budget)")
                    break
            if args.path == "e2e":
                worker.stop()
                await working
                await raw_channel.close()
            # Let the batched dispatched_at flush finish before the pool closes.
            await asyncio.sleep(0.1)
        finally:
            await connection.close()
            await pool.close()
    return {
        "ours_rate": statistics.median(r["ours"] for r in rounds),
        "raw_rate": statistics.median(r["raw"] for r in rounds),
        # Paired per round (the two sides ran seconds apart), then the median.
        "ratio": statistics.median(r["ratio"] for r in rounds),
        "rounds": rounds,
    }


PATHS = {
    "submit": ("the submit path", "TaskService.submit", "psycopg INSERT + aio-pika confirm", "submits/s"),
    "e2e": (
        "the library path end to end",
        "submit + in-process Worker",
        "INSERT + confirm, consume + UPDATE + ack",
        "tasks/s",
    ),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--path", choices=["submit", "e2e", "both"], default="both", help="what to guard (default both)"
    )
    ap.add_argument("--n", type=int, default=1000, help="tasks per side per round (default 1000)")
    ap.add_argument(
        "--rounds", type=int, default=7, help="rounds, alternating which side goes first (default 7)"
    )
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=64, help="submits in flight (default 64)")
    ap.add_argument(
        "--tolerance", type=float, default=2.0, help="fail when ratio > tolerance x baseline (default 2)"
    )
    ap.add_argument(
        "--budget-s",
        type=float,
        default=30.0,
        help="stop adding rounds after this long, per path (default 30)",
    )
    ap.add_argument("--baseline", type=Path, default=BASELINE)
    ap.add_argument("--record", action="store_true", help="write the measured ratios as the new baseline")
    args = ap.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    loop = install_uvloop()
    services = Services.from_env()
    paths = ["submit", "e2e"] if args.path == "both" else [args.path]
    measured: dict[str, dict[str, Any]] = {}
    for path in paths:
        args.path = path
        result = measure_path(args, services, loop)
        if result is None:
            return 2
        measured[path] = result

    baseline_doc: dict[str, Any] = {}
    if args.baseline.exists():
        try:
            baseline_doc = json.loads(args.baseline.read_text())
        except ValueError:
            baseline_doc = {}
    if args.record:
        for path, result in measured.items():
            entry = {
                "ratio": round(result["ratio"], 3),
                "ours_rate": round(result["ours_rate"]),
                "raw_rate": round(result["raw_rate"]),
                "recorded": datetime.now().isoformat(timespec="seconds"),
                "params": {"n": args.n, "rounds": args.rounds, "concurrency": args.concurrency, "loop": loop},
                "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
            }
            if path == "submit":  # the submit path's entry is the document itself, as before
                baseline_doc.update(entry)
            else:
                baseline_doc[path] = entry
        baseline_doc["note"] = (
            "Only each `ratio` is compared (raw/ours per second); the rates are for information."
        )
        args.baseline.write_text(json.dumps(baseline_doc, indent=2) + "\n")
        print(f"bench_guard: baselines written to {args.baseline}")
        return 0
    failed = False
    for path, result in measured.items():
        recorded = baseline_doc if path == "submit" else baseline_doc.get(path, {})
        if "ratio" not in recorded:
            print(
                f"bench_guard: no baseline for {path} in {args.baseline}; run with --record", file=sys.stderr
            )
            return 2
        limit = recorded["ratio"] * args.tolerance
        ratio = result["ratio"]
        if ratio > limit:
            print(
                f"bench_guard: REGRESSION: {PATHS[path][0]} is {ratio:.2f}x slower than the raw floor; "
                f"the baseline is {recorded['ratio']:.2f}x, the limit {limit:.2f}x"
            )
            failed = True
        else:
            base = recorded["ratio"]
            print(f"bench_guard: {path} ok ({ratio:.2f}x vs baseline {base:.2f}x, limit {limit:.2f}x)")
    return 1 if failed else 0


def measure_path(args: argparse.Namespace, services: Services, loop: str) -> dict[str, Any] | None:
    """One path's rounds in a database, queue and prefix of its own, cleaned up after."""
    what, ours_name, raw_name, unit = PATHS[args.path]
    name = f"tcguard{os.getpid()}{secrets.token_hex(3)}"
    t0 = time.monotonic()
    print(
        f"bench_guard: {what}, {args.n} tasks x {args.rounds} rounds per side, "
        f"{args.concurrency} in flight, {loop} loop, database/queue/prefix {name}",
        flush=True,
    )
    try:
        db_url = ensure_database(services, name, fresh=True)
    except Exception as exc:
        print(f"bench_guard: cannot prepare the database: {exc}", file=sys.stderr)
        return None
    try:
        result = asyncio.run(measure(args, services, name, db_url))
    except Exception as exc:
        print(f"bench_guard: measurement failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    finally:
        try:
            drop_database(services, name)
            queues = [f"{name}.tasks", f"{name}.tasks.dlq", f"{name}.tasks.raw"]
            asyncio.run(delete_queues(services.amqp_url, queues))
            asyncio.run(delete_keys(services.redis_url, f"{name}:"))
        except Exception as exc:
            print(f"bench_guard: cleanup incomplete: {exc}", file=sys.stderr)
    print(f"  taskcore {ours_name:<40} {result['ours_rate']:8.0f} {unit} (median)")
    print(f"  raw {raw_name:<45} {result['raw_rate']:8.0f} {unit} (median)")
    print(f"  ratio raw/ours (median of rounds) {result['ratio']:18.2f}   ({time.monotonic() - t0:.1f} s)")
    return result


if __name__ == "__main__":
    sys.exit(main())
