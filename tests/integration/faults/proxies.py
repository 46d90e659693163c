"""TCP proxies a test can break on purpose, to put one process's link to a service down.

The services are shared with other runs, so a test must never stop them or
close other clients' connections. Pointing one process at a ``TcpProxy``
instead (``proxy.url`` is the service URL with the proxy's host and port)
lets the test break exactly that process's traffic:

- ``cut()``: reset every live connection and refuse new ones, like a service
  that died or a host that went away (clients notice at once);
- ``pause()``: keep the connections open but forward nothing, like a network
  partition (clients notice only through their own timeouts); data queued
  meanwhile flows on after ``restore()``, as TCP would retransmit it;
- ``restore()``: forward again, on the same port.

The proxy runs its own event loop in a daemon thread, so it works the same
from synchronous tests (which block on HTTP calls) and asynchronous ones, and
every method is a plain, blocking call::

    with TcpProxy(redis_url) as proxy:
        stack.start_worker(TASKCORE_REDIS_URL=proxy.url)
        proxy.cut()
        ...
        proxy.restore()

``Proxies`` makes several and closes them all at the end, for a fixture::

    @pytest.fixture
    def proxies() -> Iterator[Proxies]:
        with Proxies() as made:
            yield made
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

DEFAULT_PORTS = {
    "postgres": 5432,
    "postgresql": 5432,
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "http": 80,
    "https": 443,
}

_CALL_TIMEOUT_S = 10.0


def _listen_port() -> int:
    """A free port *below* the ephemeral range, so no outgoing connection or
    ``bind(0)`` elsewhere on the machine grabs it while the proxy is cut and
    not listening; any free port if none is found."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            low = int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(50):
        port = random.randint(10_000, max(10_001, low - 1))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return 0


def _is_conninfo(url: str) -> bool:
    """A libpq ``key=value`` string, as psycopg and the test databases use, rather than a URL."""
    return "://" not in url


def _conninfo(url: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict  # only needed for PostgreSQL key=value strings

    return conninfo_to_dict(url)


def _split_upstream(url: str) -> tuple[str, int]:
    if _is_conninfo(url):
        params = _conninfo(url)
        host, port = str(params.get("hostaddr") or params.get("host") or ""), params.get("port") or 5432
        if not host or host.startswith("/") or "," in host:
            raise ValueError(f"cannot proxy {url!r}: one TCP host needed")
        return host, int(port)
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    if port is None:
        raise ValueError(f"no port in {url!r} and no default port for {parts.scheme!r}")
    return parts.hostname, port


def _replace_address(url: str, host: str, port: int) -> str:
    if _is_conninfo(url):
        from psycopg.conninfo import make_conninfo

        params = _conninfo(url)
        params.pop("hostaddr", None)
        return make_conninfo("", **{**params, "host": host, "port": str(port)})
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}:{port}"))


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to the host and port of ``upstream_url``."""

    def __init__(self, upstream_url: str) -> None:
        self._upstream_url = upstream_url
        self._upstream = _split_upstream(upstream_url)
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.state = "new"
        self.accepted = 0  # connections accepted since start, for tests that want to see reconnects

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``upstream_url`` pointed at the proxy (user, password, path and query kept).

        A libpq ``key=value`` string (PostgreSQL) comes back in the same form."""
        if not self._port:
            raise RuntimeError("start the proxy first")
        return _replace_address(self._upstream_url, "127.0.0.1", self._port)

    # -- control, from any thread -------------------------------------------------

    def start(self) -> TcpProxy:
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"tcp-proxy-{self._upstream[1]}", daemon=True)
        self._thread.start()
        ready.wait(_CALL_TIMEOUT_S)
        self._loop = loop
        self._call(self._init())
        self._port = self._port or _listen_port()
        self._call(self._listen())
        self.state = "open"
        return self

    def cut(self) -> None:
        """Reset every live connection and refuse new ones until ``restore()``."""
        self._call(self._cut())
        self.state = "cut"

    def pause(self) -> None:
        """Stop forwarding without closing anything, until ``restore()``."""
        self._call(self._pause())
        self.state = "paused"

    def restore(self) -> None:
        """Accept and forward again, on the same port."""
        self._call(self._restore())
        self.state = "open"

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._cut(), loop).result(_CALL_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(_CALL_TIMEOUT_S)
        self.state = "closed"

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TcpProxy :{self._port} -> {self._upstream[0]}:{self._upstream[1]} {self.state}>"

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the proxy is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_CALL_TIMEOUT_S)

    # -- on the proxy's loop ------------------------------------------------------

    async def _init(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def _listen(self) -> None:
        if self._server is not None:
            return
        for attempt in range(50):
            try:
                self._server = await asyncio.start_server(
                    self._accept, "127.0.0.1", self._port, reuse_address=True
                )
                break
            except OSError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)  # the old socket is still being torn down
        assert self._server is not None
        self._port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _pause(self) -> None:
        assert self._flowing is not None
        self._flowing.clear()

    async def _restore(self) -> None:
        assert self._flowing is not None
        await self._listen()
        self._flowing.set()

    def _track(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._links.add(client_writer)
        self._track(self._connect(client_reader, client_writer))

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            await self._flowing.wait()
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            self._links.discard(writer)
            return
        self._links.add(upstream_writer)
        self._track(self._pump(reader, upstream_writer))
        self._track(self._pump(upstream_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._links.discard(writer)


class Proxies:
    """Makes started proxies and closes every one of them on exit."""

    def __init__(self) -> None:
        self._made: list[TcpProxy] = []

    def __call__(self, upstream_url: str) -> TcpProxy:
        proxy = TcpProxy(upstream_url).start()
        self._made.append(proxy)
        return proxy

    def close(self) -> None:
        while self._made:
            self._made.pop().close()

    def __enter__(self) -> Proxies:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
