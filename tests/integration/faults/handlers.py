"""Handlers that misbehave on purpose, for the fault suite.

Loaded by real worker processes with ``--app tests.integration.faults.handlers:registry``.
Executions are recorded as lines in files under ``TASKCORE_FAULT_DIR`` (one
file per key), so a test can count how often a handler really ran across
processes and restarts.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import msgspec

from taskcore import HandlerRegistry, RetryPolicy, register_builtins

registry = HandlerRegistry()
register_builtins(registry, reverse_delay_s=float(os.environ.get("TASKCORE_REVERSE_DELAY_S", "0")))

FAST_RETRY = RetryPolicy(base_s=0.2, cap_s=0.5)


def _record(key: str) -> int:
    """Append one line for ``key``; return how many runs there were, this one included."""
    path = Path(os.environ["TASKCORE_FAULT_DIR"]) / f"{key}.runs"
    with path.open("a") as runs:
        runs.write(f"{os.getpid()}\n")
    return len(path.read_text().splitlines())


def runs(fault_dir: Path, key: str) -> list[int]:
    """The pids that ran ``key``, one per execution (for the tests)."""
    path = fault_dir / f"{key}.runs"
    return [int(line) for line in path.read_text().splitlines()] if path.exists() else []


class Flaky(msgspec.Struct):
    key: str
    failures: int


@registry.handler(max_attempts=3, retry=FAST_RETRY)
def flaky(job: Flaky) -> str:
    """Fails ``failures`` times, then succeeds."""
    if _record(job.key) <= job.failures:
        raise RuntimeError(f"planned failure of {job.key}")
    return f"ok {job.key}"


@registry.handler(max_attempts=3, retry=FAST_RETRY)
def always_fails(key: str) -> None:
    _record(key)
    raise RuntimeError(f"{key} always fails")


@registry.handler(max_attempts=3, retry=FAST_RETRY)
def crash(key: str) -> None:
    """Kills its worker process, every time: attempts must still run out."""
    _record(key)
    os._exit(1)


class Nap(msgspec.Struct):
    key: str
    seconds: float


@registry.handler(max_attempts=3, retry=FAST_RETRY)
async def sleep_async(job: Nap) -> str:
    _record(job.key)
    await asyncio.sleep(job.seconds)
    return f"slept {job.key}"


@registry.handler(max_attempts=3, retry=FAST_RETRY)
def cpu_hog(job: Nap) -> str:
    """Holds the CPU (and the GIL, most of the time) in a worker thread."""
    _record(job.key)
    deadline = time.monotonic() + job.seconds
    spins = 0
    while time.monotonic() < deadline:
        spins += 1
    return f"spun {job.key}"


@registry.handler(max_attempts=3, retry=FAST_RETRY, timeout_s=0.5)
async def slow_then_fast(key: str) -> str:
    """Over its 0.5 s timeout on the first attempt, quick on the next."""
    if _record(key) == 1:
        await asyncio.sleep(5)
    return f"fast {key}"


@registry.handler(max_attempts=3, retry=FAST_RETRY)
def record(key: str) -> str:
    """Counts executions: for exactly-once-result and duplicate-delivery checks."""
    _record(key)
    return key[::-1]
