"""Ports onto the message broker, which only carries wake-ups."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Protocol

from taskcore.model.queues import DEFAULT_QUEUE


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

    async def consume_only(self, queues: Collection[str]) -> None:
        """From now on receive from these of its queues only (the others are
        paused): what it received from the others and has not handed out
        goes back to the broker. Handed-out deliveries stay its own to settle."""
        ...

    @property
    def held(self) -> int:
        """Messages this consumer holds unsettled: received and waiting for
        ``next()``, or handed out and not yet acked. The broker counts them
        as neither ready nor gone (the wake-up census adds them back)."""
        ...


class TaskQueue(Protocol):
    """Wake-ups for workers, in named queues. A message only says "look at this task"."""

    async def publish(
        self, body: bytes, *, delay: timedelta | None = None, priority: int = 0, queue: str = DEFAULT_QUEUE
    ) -> None:
        """Return once the broker holds the message durably in ``queue``.

        Of the messages waiting in a queue, one with a higher ``priority`` (0
        to 9) is delivered first, FIFO within a priority; a delayed message
        keeps its priority once due. Priority only orders a backlog: a message
        that finds an idle consumer goes straight to it.
        """
        ...

    def consume(
        self, prefetch: int, queues: Collection[str] = (DEFAULT_QUEUE,)
    ) -> AbstractAsyncContextManager[Consumer]:
        """Subscribe to ``queues``, up to ``prefetch`` unsettled messages from
        each; messages left unsettled when the context exits are redelivered."""
        ...
