"""Handlers with retentions of their own, for the e2e tests of retention (``--app``).

``reverse`` (built in, no delay) goes by ``TASKCORE_RETENTION_S``; ``audit``
keeps its tasks forever, ``brief`` for an hour; ``broken`` always fails (so
its tasks end FAILED), ``slow`` sleeps as long as it is told (so its task
stays PROCESSING).
"""

from __future__ import annotations

import asyncio

from taskcore import HandlerRegistry, register_builtins

registry = HandlerRegistry()
register_builtins(registry, reverse_delay_s=0)


@registry.handler(retention_s=0)
def audit(text: str) -> str:
    return text


@registry.handler(retention_s=3600)
def brief(text: str) -> str:
    return text


@registry.handler(max_attempts=1)
def broken(text: str) -> str:
    raise RuntimeError(f"broken on purpose: {text}")


@registry.handler
async def slow(seconds: float) -> None:
    await asyncio.sleep(seconds)
