"""Ports onto the message broker, which only carries wake-ups."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Protocol


class Delivery(Protocol):
    """One message handed to a consumer; it stays owned until settled."""

    @property
    def body(self) -> bytes: ...

    async def ack(self) -> None: ...

    async def requeue(self) -> None:
        """Give the message back to the queue for another consumer."""
        ...

    async def dead_letter(self, reason: str) -> None:
        """Move an unprocessable message aside, with the reason, for good."""
        ...


class Consumer(Protocol):
    async def next(self) -> Delivery:
        """Wait for the next delivery."""
        ...

    @property
    def connected(self) -> bool:
        """False while nothing can reach this consumer (the broker connection is
        down, or the broker cancelled the subscription)."""
        ...

    @property
    def held(self) -> int:
        """Messages this consumer holds unsettled: received and waiting for
        ``next()``, or handed out and not yet acked. The broker counts them
        as neither ready nor gone (the wake-up census adds them back)."""
        ...


class TaskQueue(Protocol):
    """Wake-ups for workers. A message only says "look at this task"."""

    async def publish(self, body: bytes, *, delay: timedelta | None = None, priority: int = 0) -> None:
        """Return once the broker holds the message durably.

        Of the messages waiting, one with a higher ``priority`` (0 to 9) is
        delivered first, FIFO within a priority; a delayed message keeps its
        priority once due. Priority only orders a backlog: a message that finds
        an idle consumer goes straight to it.
        """
        ...

    def consume(self, prefetch: int) -> AbstractAsyncContextManager[Consumer]:
        """Subscribe; messages left unsettled when the context exits are redelivered."""
        ...
