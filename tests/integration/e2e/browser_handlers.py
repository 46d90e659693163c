"""Handlers for the e2e test of the dashboard's task browser (``--app``).

Two queues (``default``, ``emails``), a handler that fails until the test
fixes it (a file appears), and one that reports progress and waits for the
test to have seen it (another file), however slow the machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from taskcore import HandlerRegistry, RetryPolicy, TaskContext

registry = HandlerRegistry()
WAIT_POLLS = 3000  # 60 s at 20 ms


class Gate(msgspec.Struct):
    dir: str
    name: str


@registry.handler
async def echo(data: Any) -> Any:
    return data


@registry.handler(queue="emails")
async def mail(data: Any) -> str:
    return "sent"


@registry.handler(max_attempts=2, retry=RetryPolicy(base_s=0.2, cap_s=0.2))
async def broken(gate: Gate) -> str:
    """Fails until ``<dir>/fixed`` exists."""
    if not (Path(gate.dir) / "fixed").exists():
        raise RuntimeError(f"{gate.name} is broken")
    return f"{gate.name} fixed"


@registry.handler(timeout_s=300)
async def halfway(gate: Gate, ctx: TaskContext) -> str:
    """Reports half way, then waits for ``<dir>/go``."""
    ctx.progress(0.5, f"half way through {gate.name}")
    for _ in range(WAIT_POLLS):
        if (Path(gate.dir) / "go").exists():
            break
        await asyncio.sleep(0.02)
    return f"{gate.name} done"
