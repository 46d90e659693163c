"""The handlers every deployment has, as in the reference design."""

from __future__ import annotations

import asyncio

from taskcore.handlers.registry import HandlerRegistry

DEFAULT_REVERSE_DELAY_S = 5.0


def register_builtins(registry: HandlerRegistry, *, reverse_delay_s: float = DEFAULT_REVERSE_DELAY_S) -> None:
    """Add ``reverse`` unless the registry already defines its own."""
    if "reverse" in registry:
        return

    async def reverse(text: str) -> str:
        # Async on purpose: a waiting task costs one coroutine, not a thread.
        if reverse_delay_s > 0:
            await asyncio.sleep(reverse_delay_s)
        return text[::-1]

    registry.register(reverse, name="reverse")
