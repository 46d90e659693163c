"""A caller's trace continues into its submits: the W3C ``traceparent`` (and
``tracestate``, ``baggage``) of a request become the current context while it
is served, so the ``taskcore.submit`` span is a child of the caller's span.

Added only when tracing is on (``create_app``). It makes no server span of
its own: an ASGI instrumentation that does (``opentelemetry-instrumentation-asgi``)
has already continued the caller's trace, and its span is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Protocol

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send


class IncomingTraces(Protocol):
    def continued(self, carrier: Mapping[str, str]) -> AbstractContextManager[None]: ...


def _headers(scope: Scope) -> Iterator[tuple[str, str]]:
    for name, value in scope.get("headers", ()):
        yield name.decode("latin-1").lower(), value.decode("latin-1")


def carrier_of(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; a repeated one joined with
    commas, as HTTP allows for list-valued headers such as ``tracestate``."""
    carrier: dict[str, str] = {}
    for name, value in _headers(scope):
        carrier[name] = f"{carrier[name]},{value}" if name in carrier else value
    return carrier


class TraceContinuation(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self, traces: IncomingTraces) -> None:
        self._traces = traces

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        with self._traces.continued(carrier_of(scope)):
            await next_app(scope, receive, send)
