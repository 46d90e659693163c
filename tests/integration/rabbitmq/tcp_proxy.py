"""A TCP forwarder that a test can switch off, to play "the broker went away".

The broker is shared, so tests must not restart it or cut other clients'
connections. Routing one adapter through this proxy lets a test cut exactly
that adapter's connection and keep it refused (``stop``) for as long as it
likes, then let it back in (``start``) on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib

from yarl import URL


class TcpProxy:
    def __init__(self, upstream_url: str) -> None:
        upstream = URL(upstream_url)
        self._upstream_url = upstream
        self._upstream = (upstream.host or "127.0.0.1", upstream.port or 5672)
        self._server: asyncio.Server | None = None
        self._port = 0
        self._links: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return str(self._upstream_url.with_host("127.0.0.1").with_port(self._port))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._port, reuse_address=True)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and reset the open ones, like a broker that died."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._links |= {client_writer, broker_writer}
        for reader, writer in ((client_reader, broker_writer), (broker_reader, client_writer)):
            pump = asyncio.create_task(self._pump(reader, writer))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._links.discard(writer)
