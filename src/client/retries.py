"""When a request is sent again, and how long the client waits first.

A failed attempt is one of two kinds:

- **not acted on**: the connection was refused or never made
  (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``), or the API answered
  429 or 503, which taskcore only sends when it did nothing. Any request may
  be sent again.
- **maybe acted on**: the request went out and its answer was lost (a read or
  write timeout, a connection reset or closed mid-answer, an API killed
  mid-request), or a 500, 502 or 504. Only a request that is safe to repeat is
  sent again: a GET, a submit (it carries an ``Idempotency-Key``, so the API
  answers a repeat with the task the first one created), and the actions the
  API documents as safe to repeat. The others raise at once, because sending
  them again could act twice.

Which requests are which is ``Resend`` on each call (``calls.py``). The
waits: the API's ``Retry-After`` when it gave one, else exponential backoff
from ``backoff_s`` to ``max_backoff_s`` with jitter (so that clients that
failed together do not come back together), within ``attempts`` and
``total_s`` seconds from the first try. A wait that would end past
``total_s`` is not waited: the error is raised at once.

Retrying is written here rather than through a retry library because the
decision needs HTTP's facts (which error, which status, ``Retry-After``, the
request's safety), which such libraries leave to the caller anyway.
"""

from __future__ import annotations

import email.utils
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from taskcore.client.errors import TransportError

log = logging.getLogger("taskcore.client")


class Resend(enum.Enum):
    """Whether a request may be sent again after a failure that may have been acted on."""

    SAFE = "safe"  # idempotent, or made so by an Idempotency-Key
    IF_NOT_ACTED_ON = "if-not-acted-on"  # only after a refused connection, a 429 or a 503


# Raised before the request reached the API: nothing can have been done.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Raised after it may have reached it.
LOST_ANSWER_ERRORS = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
NOT_ACTED_ON_STATUSES = frozenset({429, 503})
MAYBE_ACTED_ON_STATUSES = frozenset({500, 502, 504})


@dataclass(frozen=True, slots=True, kw_only=True)
class Retries:
    """How hard the client tries: ``attempts`` in all (1: never again) within ``total_s``."""

    attempts: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    total_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff_s < 0 or self.max_backoff_s < 0 or self.total_s < 0:
            raise ValueError("Retries needs attempts >= 1 and non-negative times")

    def backoff(self, attempt: int) -> float:
        """The wait after the ``attempt``-th failure (1-based): doubling, capped,
        then between half and all of it at random."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def wait(self, attempt: int, elapsed: float, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt, or ``None``: no more attempts.

        ``attempt`` failed, ``elapsed`` seconds after the first one started.
        The API's ``Retry-After`` is honoured (with up to a tenth more, as
        jitter): it knows when it expects to be back.
        """
        if attempt >= self.attempts:
            return None
        delay = self.backoff(attempt) if retry_after is None else retry_after * random.uniform(1.0, 1.1)
        if elapsed + delay > self.total_s:
            return None
        return delay


NEVER = Retries(attempts=1)


def may_resend_after_error(resend: Resend, error: httpx.TransportError) -> bool:
    if isinstance(error, NOT_SENT_ERRORS):
        return True
    return resend is Resend.SAFE and isinstance(error, LOST_ANSWER_ERRORS)


def may_resend_after_status(resend: Resend, status: int) -> bool:
    if status in NOT_ACTED_ON_STATUSES:
        return True
    return resend is Resend.SAFE and status in MAYBE_ACTED_ON_STATUSES


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (RFC 9110: a number of seconds or an HTTP date), if valid."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Attempts:
    """One request's attempts so far: whether to send it again, and after how long.

    Both clients drive their send loops with it, each with its own clock and
    sleep: after each attempt they ask ``after_error`` or ``after_response``
    for the wait before the next one.
    """

    def __init__(self, method: str, path: str, resend: Resend, retries: Retries, clock: Callable[[], float]):
        self.method = method
        self.path = path
        self.resend = resend
        self.retries = retries
        self.clock = clock
        self.started = clock()
        self.count = 0
        # An earlier attempt may have been acted on: a 409 or a 404 now may be its doing.
        self.maybe_acted_on = False

    def after_error(self, error: httpx.TransportError) -> float:
        """The wait before the next attempt; ``TransportError`` if there is none."""
        self.count += 1
        allowed = may_resend_after_error(self.resend, error)
        delay = self.retries.wait(self.count, self.clock() - self.started) if allowed else None
        what = f"{self.method} {self.path}: {type(error).__name__}: {error}".rstrip(": ")
        if delay is None:
            lost = not allowed and isinstance(error, LOST_ANSWER_ERRORS)
            why = "; not sent again, as it may have been acted on" if lost else ""
            raise TransportError(f"{what} (attempt {self.count}{why})", attempts=self.count) from error
        self.maybe_acted_on |= isinstance(error, LOST_ANSWER_ERRORS)
        self._log(what, delay)
        return delay

    def after_response(self, response: httpx.Response) -> float | None:
        """The wait before the next attempt, or ``None``: this answer is the one to read."""
        self.count += 1
        status = response.status_code
        if response.is_success or not may_resend_after_status(self.resend, status):
            return None
        delay = self.retries.wait(self.count, self.clock() - self.started, retry_after(response))
        if delay is None:
            return None
        self.maybe_acted_on |= status in MAYBE_ACTED_ON_STATUSES
        self._log(f"{self.method} {self.path}: {status} {response.reason_phrase}", delay)
        return delay

    def _log(self, what: str, delay: float) -> None:
        log.warning("%s; attempt %d of %d in %.2f s", what, self.count + 1, self.retries.attempts, delay)
