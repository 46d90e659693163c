"""Named queues: where a task waits, and which workers take it.

A handler declares its queue (``default`` unless it says otherwise) and a
submit may name another known one. Each queue is its own line at the broker
(work, delay and dead-letter queues of its own), so a worker started for
some queues never holds the others' wake-ups, and pausing one leaves the
rest running. Names are short and plain, since they become parts of broker
queue names, metric labels and URLs.
"""

from __future__ import annotations

import re

import msgspec

from taskcore.errors import InvalidInput, TaskcoreError

DEFAULT_QUEUE = "default"

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Broker queue names end in these; a queue of the same name would collide with them.
RESERVED_NAMES = frozenset({"dlq", "delay"})


def check_queue_name(name: object) -> str:
    """``name`` if it can name a queue (1 to 63 of ``a-z 0-9 _ -``, not a
    reserved word), else ``InvalidInput``."""
    if not isinstance(name, str) or not _NAME.match(name) or name in RESERVED_NAMES:
        raise InvalidInput(
            f"a queue name is 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or"
            f" digit, and not {' or '.join(sorted(RESERVED_NAMES))}; got {name!r}",
            queue=name,
        )
    return name


class UnknownQueue(TaskcoreError):
    """No handler uses a queue of this name."""


class QueueLoad(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's tasks as the database counts them."""

    running: int = 0  # PROCESSING
    waiting: int = 0  # PENDING and due: waiting for a worker (or for a resume)
    scheduled: int = 0  # PENDING, due later (delayed, or a retry's backoff)


class QueueView(msgspec.Struct, frozen=True, kw_only=True):
    """A queue as ``GET /queues`` shows it; ``None`` where the broker did not answer."""

    name: str
    paused: bool
    ready: int | None  # wake-ups waiting at the broker
    dead_letters: int | None
    running: int
    waiting: int
    scheduled: int
