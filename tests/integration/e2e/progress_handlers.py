"""Handlers for the e2e tests of progress (``--app``).

``stages`` and ``stages_sync`` (the same in a thread) report each stage and
then wait for the test to have seen it (a file named after the stage in
``dir``), so the test sees every report, however slow the machine.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from taskcore import HandlerRegistry, TaskContext, register_builtins

registry = HandlerRegistry()
register_builtins(registry, reverse_delay_s=0)

SEEN_POLLS = 3000  # 60 s at 20 ms


class Stages(msgspec.Struct):
    dir: str
    stages: list[tuple[float, str]]


def seen(work: Stages, number: int) -> bool:
    return (Path(work.dir) / f"seen-{number}").exists()


@registry.handler(timeout_s=300)
async def stages(work: Stages, ctx: TaskContext) -> int:
    for number, (fraction, message) in enumerate(work.stages):
        ctx.progress(fraction, message)
        for _ in range(SEEN_POLLS):
            if seen(work, number):
                break
            await asyncio.sleep(0.02)
    return len(work.stages)


@registry.handler(timeout_s=300)
def stages_sync(work: Stages, ctx: TaskContext) -> int:
    for number, (fraction, message) in enumerate(work.stages):
        ctx.progress(fraction, message)
        for _ in range(SEEN_POLLS):
            if seen(work, number):
                break
            time.sleep(0.02)
    return len(work.stages)


@registry.handler(timeout_s=300)
async def endless(_: None, ctx: TaskContext) -> None:
    """Reports every 10 ms until stopped."""
    step = 0
    while True:
        step += 1
        ctx.progress(min(step / 10_000, 1), f"step {step}")
        await asyncio.sleep(0.01)
