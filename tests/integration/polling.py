"""Waiting, in async tests, for a condition rather than for a fixed time.

The synchronous suites (``faults``, ``e2e``) poll with their ``wait_for`` and
``wait_until``; this is the same for a test running on an event loop.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def until(
    check: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float = 30.0, interval_s: float = 0.02
) -> None:
    """Poll ``check`` (plain or async) until it is true; fail, naming ``what``, after ``timeout_s``."""
    __tracebackhide__ = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        await asyncio.sleep(interval_s)
