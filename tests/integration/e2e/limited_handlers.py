"""Handlers with concurrency and rate limits, for the e2e tests of limits (``--app``)."""

from __future__ import annotations

import asyncio

from taskcore import HandlerRegistry, register_builtins

registry = HandlerRegistry()
register_builtins(registry, reverse_delay_s=0)


@registry.handler(concurrency=2)
async def capped(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@registry.handler(rate_limit="20/s")
async def metered(n: int) -> int:
    return n
