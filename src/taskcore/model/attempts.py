"""A task's recent attempts: when each was claimed, and how it ended.

The row keeps only the running (or last) attempt's start, and the last error.
A task page draws a timeline (created, each claim, its verdict), so each
transition that starts or ends an attempt also records it here, in the same
write: a claim appends an entry, a verdict (or a lapsed lease, a hand-back at
shutdown, a cancel while running) closes the last one. Bounded: only the last
``MAX_ATTEMPT_LOG`` are kept, and each entry's error is cut short, so a task
retried a thousand times carries the same small array as one retried twice.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import msgspec

MAX_ATTEMPT_LOG = 20
"""Attempts kept per task, the newest ones."""

MAX_ATTEMPT_ERROR = 200
"""Characters kept of an attempt's error (the whole last error stays in ``Task.error``)."""

_ELLIPSIS = "…"


class AttemptOutcome(StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"  # the handler raised or timed out (retried after, or the task FAILED)
    CANCELLED = "CANCELLED"  # cancelled while it ran
    ABANDONED = "ABANDONED"  # its lease lapsed: its worker died or was cut off
    HANDED_BACK = "HANDED_BACK"  # its worker shut down before a verdict; not counted


class Attempt(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One claim of the task. ``number``: the task's attempt count at the
    claim (a retry starts it again at 1, an uncounted attempt's number is
    used again). ``ended_at`` and ``outcome`` are null while it runs."""

    number: int
    claimed_at: datetime
    ended_at: datetime | None = None
    outcome: AttemptOutcome | None = None
    error: str | None = None

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


def started(log: tuple[Attempt, ...], number: int, now: datetime) -> tuple[Attempt, ...]:
    """``log`` with a new attempt at its end, the oldest dropped past the bound."""
    return (*log, Attempt(number=number, claimed_at=now))[-MAX_ATTEMPT_LOG:]


def ended(
    log: tuple[Attempt, ...], outcome: AttemptOutcome, now: datetime, error: str | None = None
) -> tuple[Attempt, ...]:
    """``log`` with its open last attempt closed; as it was when none is open
    (a task that ran before the log existed)."""
    if not log or not log[-1].is_open:
        return log
    closed = msgspec.structs.replace(log[-1], ended_at=now, outcome=outcome, error=_short(error))
    return (*log[:-1], closed)


def _short(error: str | None) -> str | None:
    if error is None or len(error) <= MAX_ATTEMPT_ERROR:
        return error
    return error[: MAX_ATTEMPT_ERROR - len(_ELLIPSIS)] + _ELLIPSIS
