"""The worker's own HTTP port: ``/metrics`` and ``/health/live``.

A small WSGI server (the standard library's, as prometheus-client's own
``start_http_server`` uses) on daemon threads, not an ASGI app in the
worker's event loop: the probe must still answer when that loop is blocked
(an async handler calling ``time.sleep``), and it then answers 503, because
the worker's heartbeat stopped. ``/health/live`` is 503 whenever
``Worker.liveness()`` says the worker does not consume, with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import msgspec

from taskcore.adapters.prometheus import render
from taskcore.work.worker import Liveness

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds would drown the worker's log."""


class _Live(msgspec.Struct):
    status: str
    detail: str


def probe_app(liveness: Callable[[], Liveness]) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path not in ("/metrics", "/health/live"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: /metrics and /health/live are served here\n"]
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if path == "/metrics":
            body, content_type = render(environ.get("HTTP_ACCEPT"))
            start_response("200 OK", [("Content-Type", content_type)])
            return [body]
        state = liveness()
        live = _Live("ok" if state.consuming else "unavailable", state.detail)
        status = "200 OK" if state.consuming else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")])
        return [msgspec.json.encode(live)]

    return app


class ProbeServer:
    def __init__(self, liveness: Callable[[], Liveness], *, host: str = "0.0.0.0", port: int) -> None:
        self._server = make_server(
            host, port, probe_app(liveness), server_class=_Server, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="taskcore-worker-probe", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> ProbeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
