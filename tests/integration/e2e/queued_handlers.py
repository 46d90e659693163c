"""Handlers on named queues, for the e2e tests of queues (``--app``).

Each returns the pid of the worker that ran it, so a test can tell which
worker process took which queue's tasks.
"""

from __future__ import annotations

import asyncio
import os

from taskcore import HandlerRegistry, register_builtins

registry = HandlerRegistry()
register_builtins(registry, reverse_delay_s=0)


@registry.handler
async def plain(seconds: float) -> int:
    await asyncio.sleep(seconds)
    return os.getpid()


@registry.handler(queue="emails")
async def mail(seconds: float) -> int:
    await asyncio.sleep(seconds)
    return os.getpid()
