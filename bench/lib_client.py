#!/usr/bin/env python3
"""The producer of the library workloads: taskcore used as a library, no HTTP.

Run by ``bench/run.py`` with the project's python and the bench's settings in
the environment (the same database, queue and prefix as its worker). It builds
the container as the README's "Use it as a library" shows, reads the inputs
from stdin (one JSON list), submits one task to warm up and prints
``{"ready": true}``; on the next line from stdin it submits the inputs and
prints ``{"t0_wall": ..., "submit_s": ..., "submitted": ..., "errors": ...}``.
Then it waits for another line before it closes its resources, so its CPU is
read while it is still a process of its own (``machine_cpu`` names it by pid).

    --bulk 0     W1-lib: ``service.submit`` per task, at most --concurrency at once
    --bulk 500   bulk: ``service.submit_many`` of 500 at a time, --concurrency batches at once
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from taskcore import HandlerRegistry, register_builtins
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.lifecycle import open_resources
from taskcore.entrypoints.settings import load_settings
from taskcore.model.batch import TaskRequest


async def submit_each(service: object, inputs: list[str], concurrency: int) -> int:
    """``service.submit`` per input, at most ``concurrency`` in flight; the errors."""
    errors = 0
    pending = iter(inputs)

    async def lane() -> None:
        nonlocal errors
        for text in pending:
            try:
                await service.submit("reverse", text)  # type: ignore[attr-defined]
            except Exception:
                errors += 1

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return errors


async def submit_bulk(service: object, inputs: list[str], batch: int, concurrency: int) -> int:
    """``service.submit_many`` of ``batch`` inputs at a time, ``concurrency`` batches at once."""
    errors = 0
    batches = iter([inputs[i : i + batch] for i in range(0, len(inputs), batch)])

    async def lane() -> None:
        nonlocal errors
        for chunk in batches:
            try:
                await service.submit_many([TaskRequest(type="reverse", input=text) for text in chunk])  # type: ignore[attr-defined]
            except Exception:
                errors += len(chunk)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return errors


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--bulk", type=int, default=0, help="tasks per submit_many (0: one submit per task)")
    args = ap.parse_args()
    inputs: list[str] = json.loads(sys.stdin.readline())
    registry = HandlerRegistry()
    register_builtins(registry)
    container = build_container(load_settings(), registry)
    async with open_resources(container):
        service = container.service()
        await service.submit("reverse", "warm up")  # connections open, statements prepared
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        t0_wall, started = time.time(), time.perf_counter()
        if args.bulk:
            errors = await submit_bulk(service, inputs, args.bulk, max(1, args.concurrency // 32))
        else:
            errors = await submit_each(service, inputs, args.concurrency)
        submit_s = time.perf_counter() - started
        out = {"t0_wall": t0_wall, "submit_s": submit_s, "submitted": len(inputs) - errors, "errors": errors}
        print(json.dumps(out), flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # until the bench has read the CPU counters


if __name__ == "__main__":
    asyncio.run(main())
