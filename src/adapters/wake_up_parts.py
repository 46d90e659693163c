"""One broker message that wakes several tasks, handed out as one delivery per task.

The worker runs, and settles, each task on its own; the broker knows only the
message. So the message is settled once every part is: acked if every part
was acked or dead-lettered, given back whole if any part was requeued (the
parts already done come back too, and their duplicate-safe claims drop
them). A part that is dead-lettered goes to the dead letters alone, as a
message of its own: the others of the message are fine.

Both consumers (RabbitMQ's and the in-process one) split their messages
with this, so they settle batches the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from taskcore.model.messages import split_wake_ups

Settle = Callable[[], Awaitable[None]]
DeadLetterOne = Callable[[bytes, str], Awaitable[None]]  # a part's body, the reason


class WakeUpPart:
    """A ``Delivery`` for one task of a message that wakes several."""

    def __init__(self, message: PartedMessage, body: bytes) -> None:
        self._message = message
        self._body = body
        self.settled = False

    @property
    def body(self) -> bytes:
        return self._body

    @property
    def source(self) -> str:
        """The named queue its message came from."""
        return self._message.source

    async def ack(self) -> None:
        if self._settle():
            await self._message.part_settled(requeue=False)

    async def requeue(self) -> None:
        if self._settle():
            await self._message.part_settled(requeue=True)

    async def dead_letter(self, reason: str) -> None:
        if self.settled:
            return
        await self._message.dead_letter_one(self._body, reason)  # a failure leaves it ours to requeue
        if self._settle():
            await self._message.part_settled(requeue=False)

    def _settle(self) -> bool:
        """At most once, so a second ack or requeue is a no-op, as for a whole message."""
        if self.settled:
            return False
        self.settled = True
        return True


class PartedMessage:
    """Counts a message's parts down to zero, then settles the message."""

    def __init__(
        self, *, parts: int, ack: Settle, requeue: Settle, dead_letter_one: DeadLetterOne, source: str
    ) -> None:
        self._left = parts
        self._requeue_whole = False
        self._ack = ack
        self._requeue = requeue
        self.dead_letter_one = dead_letter_one
        self.source = source

    async def part_settled(self, *, requeue: bool) -> None:
        self._requeue_whole = self._requeue_whole or requeue
        self._left -= 1
        if self._left == 0:
            await (self._requeue() if self._requeue_whole else self._ack())


def split(
    body: bytes, *, ack: Settle, requeue: Settle, dead_letter_one: DeadLetterOne, source: str
) -> list[WakeUpPart] | None:
    """The parts of a message waking several tasks, or ``None`` for a message
    that is handed out whole (``model/messages.py``)."""
    bodies = split_wake_ups(body)
    if bodies is None:
        return None
    message = PartedMessage(
        parts=len(bodies), ack=ack, requeue=requeue, dead_letter_one=dead_letter_one, source=source
    )
    return [WakeUpPart(message, part) for part in bodies]
