"""Handlers for the e2e tests of workflows (``--app``)."""

from __future__ import annotations

import asyncio

from taskcore import HandlerRegistry, TaskContext, register_builtins

registry = HandlerRegistry()
register_builtins(registry, reverse_delay_s=0)


@registry.handler
async def step(name: str, ctx: TaskContext) -> dict[str, object]:
    """Takes a moment, and answers what it read of the steps before it."""
    await asyncio.sleep(0.3)
    return {"name": name, "read": dict(ctx.results)}


@registry.handler(max_attempts=1)
async def boom(name: str) -> None:
    raise RuntimeError(f"{name} fails")
