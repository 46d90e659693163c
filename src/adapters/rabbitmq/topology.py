"""Queue names and declaration arguments, built in one place.

RabbitMQ refuses a re-declaration whose arguments differ (PRECONDITION_FAILED
closes the channel), so the publisher, every consumer and the tests must
declare from these values and nowhere else.

Delays use one queue per *bucket* rather than one queue with per-message TTL:
RabbitMQ only expires the message at the head of a queue, so a 60 s message
would hold back a 1 s one published after it. Within a bucket every message
has the same TTL, so the head always expires first. A delay is rounded *up*
to two significant digits of milliseconds (1234 ms -> 1300 ms): a message
arrives at most 10 % late and never early, and jittered retry back-offs
spread over at most 90 buckets per decade instead of one queue per value.

A delay longer than the longest bucket (48.6 days: RabbitMQ's TTLs are 32-bit
milliseconds) waits in that bucket with its due time in ``DUE_HEADER``; the
consumer that receives it early publishes it again for the rest of the delay.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.model.task import MAX_PRIORITY

QueueType = Literal["classic", "quorum"]

# Messages carry their task's priority (0 to 9). Declared from the start:
# RabbitMQ cannot add x-max-priority to an existing queue.
WORK_QUEUE_ARGUMENTS: dict[str, Any] = {"x-max-priority": MAX_PRIORITY}  # the core's bound

# Quorum queues are replicated (Raft) over the cluster's nodes and survive
# the loss of a minority of them. RabbitMQ before 3.12 refuses x-max-priority
# on them (PRECONDITION_FAILED), and 3.12+ keeps two levels only, so a quorum
# work queue delivers in publishing order: priority still orders the sweeper's
# and the census's re-publishing, not the broker's backlog.
QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
# A quorum delay bucket dead-letters due messages at least once (the default
# is at most once, which can drop one if a leader fails mid-way); RabbitMQ
# applies that strategy only with reject-publish overflow.
QUORUM_DEAD_LETTERING: dict[str, Any] = {
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


def work_queue_arguments(queue_type: QueueType = "classic") -> dict[str, Any]:
    return dict(QUORUM) if queue_type == "quorum" else dict(WORK_QUEUE_ARGUMENTS)


def dead_letter_queue_arguments(queue_type: QueueType = "classic") -> dict[str, Any]:
    return dict(QUORUM) if queue_type == "quorum" else {}


REASON_HEADER = "x-taskcore-reason"

# A bucket queue unused for this long after its TTL deletes itself. Publishing
# does not count as use for x-expires, so the publisher re-declares a bucket
# at least every BUCKET_IDLE_MS / 2 to renew the lease before it could lapse.
BUCKET_IDLE_MS = 10 * 60 * 1000

MAX_DELAY_MS = 2**32 - 1 - BUCKET_IDLE_MS  # x-message-ttl and x-expires are uint32
LONGEST_BUCKET_MS = 42 * 10**8  # the longest bucket delay_bucket_ms gives within MAX_DELAY_MS

DUE_HEADER = "x-taskcore-due-ms"  # epoch ms; only on messages delayed beyond the longest bucket


def work_queue(base: str, queue: str = DEFAULT_QUEUE) -> str:
    """The broker queue of the named queue ``queue``: ``base`` itself for the
    default one (so a deployment from before named queues keeps its queue),
    ``base.<name>`` for the others. ``dlq`` and ``delay`` cannot name a queue,
    so these never collide with the dead-letter and delay queues below."""
    return base if queue == DEFAULT_QUEUE else f"{base}.{queue}"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"


def delay_queue(queue: str, bucket_ms: int) -> str:
    return f"{queue}.delay.{bucket_ms}"


def delay_bucket_ms(delay: timedelta) -> int:
    """The bucket for ``delay``: never shorter than asked, at most 10 % longer."""
    micros = delay // timedelta(microseconds=1)
    ms = max(1, -(-micros // 1000))
    if ms >= 100:
        step = 10 ** (len(str(ms)) - 2)
        ms = -(-ms // step) * step
    if ms > MAX_DELAY_MS:
        raise ValueError(f"delay {delay} is longer than the broker can hold a message")
    return ms


def delay_queue_arguments(queue: str, bucket_ms: int, queue_type: QueueType = "classic") -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "x-message-ttl": bucket_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
        "x-expires": bucket_ms + BUCKET_IDLE_MS,
    }
    if queue_type == "quorum":
        arguments |= QUORUM | QUORUM_DEAD_LETTERING
    return arguments


def due_ms(delay: timedelta) -> int:
    """``DUE_HEADER``'s value for a message published now with ``delay``."""
    return time.time_ns() // 1_000_000 + -(-delay // timedelta(milliseconds=1))


def time_to_due(headers: Mapping[str, Any] | None) -> timedelta | None:
    """How long a message carrying ``DUE_HEADER`` is still early; ``None`` once due (or without it)."""
    due = (headers or {}).get(DUE_HEADER)
    if not isinstance(due, int) or isinstance(due, bool):
        return None
    left = due - time.time_ns() // 1_000_000
    return timedelta(milliseconds=left) if left > 0 else None
