"""Handlers for the e2e tests of unique tasks and bulk actions (``--app``).

``nap`` sleeps, so tasks stay PROCESSING while a bulk cancel reaches them;
``gated`` fails (for good: one attempt) until its gate file exists, as a
handler does until its bug is fixed, so a bulk retry then completes them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from taskcore import HandlerRegistry, register_builtins

registry = HandlerRegistry()
register_builtins(registry, reverse_delay_s=0)


@registry.handler
async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


@registry.handler(max_attempts=1)
def gated(gate: str) -> str:
    if not Path(gate).exists():
        raise RuntimeError(f"{gate} is closed")
    return "passed"
