"""A schedule declared in code, for the e2e test of schedules (``--app``)."""

from __future__ import annotations

import os
from datetime import timedelta

from taskcore import HandlerRegistry, register_builtins

registry = HandlerRegistry()
register_builtins(registry, reverse_delay_s=0)


@registry.periodic(every=timedelta(seconds=1), name="every-second")
async def tick(_: None) -> int:
    return os.getpid()
