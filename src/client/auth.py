"""Bearer tokens, as an ``httpx.Auth``: a fixed string, or a function asked before every attempt.

A function lets a service rotate short-lived tokens (a new JWT before the old
one expires) without rebuilding the client; it is asked per attempt, so a
retry after a long wait goes out with a current token. ``AsyncClient`` also
takes a coroutine function, for tokens fetched over the network.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

import httpx

TokenSource = str | Callable[[], str]
AsyncTokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]


class BearerToken(httpx.Auth):
    def __init__(self, source: AsyncTokenSource) -> None:
        self._source = source

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._source() if callable(self._source) else self._source
        if inspect.isawaitable(token):
            if inspect.iscoroutine(token):
                token.close()  # never awaited: say so without a "never awaited" warning
            raise TypeError("the synchronous Client needs a token function that returns a string")
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = self._source() if callable(self._source) else self._source
        if inspect.isawaitable(token):
            token = await token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request
