"""A per-owner limit on submitting tasks (``POST /tasks/``).

Submitting is the one route that creates work (a row, a message, a handler
run), so it is the one a single caller could flood. The limit is keyed on the
caller's ``sub`` (``principal_of``), not the client address: many owners can
share one proxy address, and one owner can come from many. With auth off every
caller is the one ``anonymous`` owner, so the limit is then for everyone.

Litestar's ``RateLimitConfig`` can key on the principal and skip other routes,
but does not fit: it keeps each key's whole history as a JSON list in a store,
decoded and re-encoded under one global lock on every request (O(N) work per
submit at N = 6000/minute), counts fixed windows, reads ``time()`` directly
(nothing to inject in tests) and answers 429 without ``Retry-After``.

Here instead: GCRA (the generic cell rate algorithm, i.e. a token bucket kept
as one float per owner). An owner may burst ``limit`` submits, then gets one
more every ``window_s / limit`` seconds; a full idle window refills the burst.
The check is synchronous, no I/O and no ``await``, so it is atomic on the
event loop without a lock. State lives in this process: N API processes admit
up to N times the limit in total.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import TooManyRequestsException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from taskcore.entrypoints.http.auth import principal_of

Clock = Callable[[], float]

SUBMIT_METHOD = "POST"
SUBMIT_PATH = "/tasks"  # the routed template: "/tasks" and "/tasks/" alike, never "/tasks/1"


class OwnerRateLimiter:
    """``limit`` acquisitions per ``window_s`` per key, bursts up to ``limit``."""

    def __init__(self, limit: int, window_s: float = 60.0, *, clock: Clock = time.monotonic) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("the rate limit needs limit >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._interval = window_s / limit
        # Sums of many float intervals drift by a few ulps; without slack the
        # limit-th request of a burst could be refused.
        self._slack = self._interval * 1e-6
        self._clock = clock
        # Per key, the "theoretical arrival time": when the key's bucket will be
        # full again. A key whose time has passed is the same as an absent one.
        self._full_at: dict[str, float] = {}
        self._next_sweep = clock() + window_s

    def acquire(self, key: str) -> float:
        """``0.0`` when the call may go ahead (and is counted), else the
        seconds until the key has a slot again (and nothing is counted)."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        full_at = max(self._full_at.get(key, now), now) + self._interval
        wait = full_at - now - self.window_s
        if wait > self._slack:
            return wait
        self._full_at[key] = full_at
        return 0.0

    def _sweep(self, now: float) -> None:
        """Forget keys whose bucket is full again, at most once a window, so
        callers who stop calling do not stay in memory."""
        self._full_at = {key: at for key, at in self._full_at.items() if at > now}
        self._next_sweep = now + self.window_s

    def __len__(self) -> int:
        return len(self._full_at)


class SubmitRateLimitMiddleware(ASGIMiddleware):
    """Applies the limiter to ``POST /tasks/``; every other route passes untouched.

    Must come *after* the authentication middleware in ``middleware=[...]``
    (inner to it): the owner is the principal auth put on the scope. Unlike most
    middleware it is stateful on purpose: Litestar builds it into every route's
    stack from this one instance, so all of them share the limiter."""

    scopes = (ScopeType.HTTP,)

    def __init__(
        self, limiter: OwnerRateLimiter, *, method: str = SUBMIT_METHOD, path: str = SUBMIT_PATH
    ) -> None:
        self.limiter = limiter
        self.method = method
        self.path = path

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope.get("method") == self.method and scope.get("path_template") == self.path:
            connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope)
            wait = self.limiter.acquire(principal_of(connection).sub)
            if wait > 0:
                limit, window = self.limiter.limit, self.limiter.window_s
                raise TooManyRequestsException(
                    detail=f"at most {limit} submissions per {window:g} s; try again later",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        await next_app(scope, receive, send)


def rate_limit_middleware(per_minute: int, *, clock: Clock = time.monotonic) -> SubmitRateLimitMiddleware:
    """The submit limit for ``create_app``: ``per_minute`` submits per owner per
    minute in this process (``per_minute`` >= 1; leave the middleware out to turn it off)."""
    return SubmitRateLimitMiddleware(OwnerRateLimiter(per_minute, 60.0, clock=clock))
