"""What the client's unit tests share: the API under test, and transports that fail on purpose.

The client is tested against the real app (``create_app`` on the memory
adapters), not a mock of it: a path, a body or a header the client gets
wrong fails here as it would against a server. Failures the app cannot make
(a refused connection, an answer lost after the app acted) come from
``Flaky``, which wraps the transport to the app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import jwt
from litestar import Litestar

from taskcore import HandlerRegistry, TaskContext, register_builtins
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.settings import load_settings

SECRET = "a-test-secret-that-is-long-enough-for-hs256!"
BASE_URL = "http://taskcore.test"

Fault = Literal["refuse", "lose", "reset", "truncate", "502", "503", "429"]
Matcher = Callable[[httpx.Request], bool]


def registry() -> HandlerRegistry:
    made = HandlerRegistry()
    register_builtins(made, reverse_delay_s=0.05)
    made.add_queue("urgent")

    @made.handler(max_attempts=1)
    async def explode(_: str) -> None:
        raise RuntimeError("handler bug")

    @made.handler
    async def slow(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @made.handler
    async def report(steps: int, ctx: TaskContext) -> int:
        """Reports ``n / (steps + 1)`` at second ``n - 1``; done at second ``steps``."""
        for n in range(1, steps + 1):
            ctx.progress(n / (steps + 1), f"step {n}")
            await asyncio.sleep(1)
        return steps

    return made


def make_container(**settings: Any) -> Container:
    return build_container(load_settings({}, **settings), registry())


def token(sub: str = "alice", scope: str = "tasks:read tasks:write") -> str:
    claims = {"sub": sub, "scope": scope, "exp": int(time.time()) + 600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def anything(_: httpx.Request) -> bool:
    return True


def to(method: str, path: str) -> Matcher:
    """Requests of ``method`` to ``path`` (without its trailing slash)."""
    return lambda request: request.method == method and request.url.path.rstrip("/") == path.rstrip("/")


@dataclass
class Faults:
    """Faults to inject, in order, each into the next request it matches.

    - ``refuse``: ``ConnectError`` before the request reaches the app;
    - ``lose``: the app acts on it and answers, and the answer is lost (``ReadError``);
    - ``reset``: the app acts on it, and the connection is closed before an
      answer (``RemoteProtocolError``, as when the API process is killed);
    - ``truncate``: an event stream that ends after its first ``status`` event;
    - ``502``, ``503``, ``429``: answered by a proxy in front, without the app.
    """

    planned: list[tuple[Matcher, Fault]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    injected: list[Fault] = field(default_factory=list)

    def add(self, fault: Fault, times: int = 1, when: Matcher = anything) -> Faults:
        self.planned += [(when, fault)] * times
        return self

    def take(self, request: httpx.Request) -> Fault | None:
        self.requests.append(request)
        for index, (matches, fault) in enumerate(self.planned):
            if matches(request):
                del self.planned[index]
                self.injected.append(fault)
                return fault
        return None


def before_app(fault: Fault | None, request: httpx.Request) -> httpx.Response | None:
    """The answer (or error) of a fault the app never sees."""
    if fault == "refuse":
        raise httpx.ConnectError("connection refused", request=request)
    if fault in ("502", "503", "429"):
        status = int(fault)
        headers = {"Retry-After": "2"} if status != 502 else {"content-type": "text/html"}
        return httpx.Response(status, headers=headers, content=b"<html>proxy</html>", request=request)
    return None


def after_app(fault: Fault | None, request: httpx.Request, response: httpx.Response) -> httpx.Response:
    if fault == "truncate":
        body = response.content
        end = body.index(b"\r\n\r\n", body.index(b"event: status")) + 4  # Litestar ends lines with CRLF
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return httpx.Response(response.status_code, headers=headers, content=body[:end], request=request)
    if fault == "lose":
        raise httpx.ReadError("connection reset while reading the answer", request=request)
    if fault == "reset":
        raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
    return response


class FlakyAsync(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.faults.take(request)
        early = before_app(fault, request)
        if early is not None:
            return early
        response = await self.inner.handle_async_request(request)
        if fault is None:
            return response
        await response.aread()
        return after_app(fault, request, response)


class FlakySync(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.faults.take(request)
        early = before_app(fault, request)
        if early is not None:
            return early
        response = self.inner.handle_request(request)
        if fault is None:
            return response
        response.read()
        return after_app(fault, request, response)


@asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[httpx.ASGITransport]:
    """A transport to ``app``, whose lifespan (and embedded worker) runs for the block, in this loop.

    As ``test_http.serving``, the lifespan runs in a task of its own, as a server runs it.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(lifespan(), name="lifespan")
    startup = asyncio.ensure_future(started.wait())
    await asyncio.wait({task, startup}, return_when=asyncio.FIRST_COMPLETED)
    startup.cancel()
    if task.done():
        task.result()
        raise AssertionError("the lifespan ended before the app started")
    try:
        yield httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    finally:
        stop.set()
        await task
