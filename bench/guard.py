#!/usr/bin/env python3
"""CI regression guard for the submit path (``.ci/bench_guard``; under a minute).

In one process, on the same event loop and the same services, alternating in
rounds so that machine noise hits both sides alike:

  ours  N concurrent ``TaskService.submit("reverse", ...)`` through the real
        container and adapters (validation, INSERT ... RETURNING the row,
        publish with confirm, cache write-through, batched dispatched_at);
  raw   the same durable work by hand: psycopg INSERT of a row into the same
        table from a pool of the same size, then an aio-pika publish with
        publisher confirms to the same queue, at the same concurrency.

It prints both rates and the ratio raw/ours (how many times slower our submit
path is than the hand-written floor), and fails (exit 1) only when that ratio
is worse than ``--tolerance`` (2) times the ratio recorded in
``bench/guard_baseline.json``. Absolute rates are never asserted: CI machines
differ, the ratio mostly does not. Exit 2: the guard could not measure
(services unreachable, no baseline).

    .ci/bench_guard                  # measure and compare
    .ci/bench_guard --record         # measure and write the baseline
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

            async def raw(text: str) -> None:
                async with pool.connection() as conn:
                    cursor = await conn.execute(RAW_INSERT, (Jsonb(text),))
                    row = await cursor.fetchone()
                assert row is not None
                await channel.default_exchange.publish(
                    aio_pika.Message(str(row[0]).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue,
                )

            sides = {"ours": ours, "raw": raw}
            c = args.concurrency
            for side, fn in sides.items():  # warm-up: connections, caches, JIT-free but import-heavy paths
                await timed(fn, make_inputs(args.warmup, seed=hash(side) & 0xFFFF), c)
            rounds: list[dict[str, float]] = []
            started = time.monotonic()
            for r in range(args.rounds):
                order = ["ours", "raw"] if r % 2 == 0 else ["raw", "ours"]
                rates = {}
                for side in order:
                    rates[side] = await timed(
                        sides[side], make_inputs(args.n, seed=r * 2 + (side == "raw")), c
                    )
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="submits per side per round (default 1000)")
    ap.add_argument(
        "--rounds", type=int, default=7, help="rounds, alternating which side goes first (default 7)"
    )
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=64, help="submits in flight (default 64)")
    ap.add_argument(
        "--tolerance", type=float, default=2.0, help="fail when ratio > tolerance x baseline (default 2)"
    )
    ap.add_argument(
        "--budget-s", type=float, default=40.0, help="stop adding rounds after this long (default 40)"
    )
    ap.add_argument("--baseline", type=Path, default=BASELINE)
    ap.add_argument("--record", action="store_true", help="write the measured ratio as the new baseline")
    args = ap.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    loop = install_uvloop()
    services = Services.from_env()
    name = f"tcguard{os.getpid()}{secrets.token_hex(3)}"
    t0 = time.monotonic()
    print(
        f"bench_guard: submit path, {args.n} tasks x {args.rounds} rounds per side, "
        f"{args.concurrency} in flight, {loop} loop, database/queue/prefix {name}",
        flush=True,
    )
    try:
        db_url = ensure_database(services, name, fresh=True)
    except Exception as exc:
        print(f"bench_guard: cannot prepare the database: {exc}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(measure(args, services, name, db_url))
    except Exception as exc:
        print(f"bench_guard: measurement failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        try:
            drop_database(services, name)
            asyncio.run(delete_queues(services.amqp_url, [f"{name}.tasks", f"{name}.tasks.dlq"]))
            asyncio.run(delete_keys(services.redis_url, f"{name}:"))
        except Exception as exc:
            print(f"bench_guard: cleanup incomplete: {exc}", file=sys.stderr)

    ratio = result["ratio"]
    print(f"  taskcore TaskService.submit          {result['ours_rate']:8.0f} submits/s (median)")
    print(f"  raw psycopg INSERT + aio-pika confirm {result['raw_rate']:8.0f} submits/s (median)")
    print(f"  ratio raw/ours (median of rounds)     {ratio:8.2f}   ({time.monotonic() - t0:.1f} s)")

    if args.record:
        doc = {
            "ratio": round(ratio, 3),
            "ours_rate": round(result["ours_rate"]),
            "raw_rate": round(result["raw_rate"]),
            "recorded": datetime.now().isoformat(timespec="seconds"),
            "params": {"n": args.n, "rounds": args.rounds, "concurrency": args.concurrency, "loop": loop},
            "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
            "note": "Only `ratio` is compared (raw/ours submits per second); the rates are for information.",
        }
        args.baseline.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"bench_guard: baseline written to {args.baseline}")
        return 0
    try:
        baseline = json.loads(args.baseline.read_text())["ratio"]
    except (OSError, KeyError, ValueError) as exc:
        print(
            f"bench_guard: no usable baseline in {args.baseline} ({exc}); run with --record", file=sys.stderr
        )
        return 2
    limit = baseline * args.tolerance
    if ratio > limit:
        print(
            f"bench_guard: REGRESSION: the submit path is {ratio:.2f}x slower than the raw floor; "
            f"the baseline is {baseline:.2f}x, the limit {limit:.2f}x"
        )
        return 1
    print(f"bench_guard: ok ({ratio:.2f}x vs baseline {baseline:.2f}x, limit {limit:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
