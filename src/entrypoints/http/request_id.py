"""A request id on every response and every log line written while serving it.

A caller (or the proxy in front of us) may send ``X-Request-ID``; a sane value
(1..128 of ``[A-Za-z0-9._-]``) is kept so one id follows the request across
systems, anything else is ignored rather than echoed (it would be a way to
inject text into our logs and headers). Without one we make one up.

Two pieces, bundled in ``RequestIdPlugin`` because neither suffices alone:

* ``RequestIdMiddleware`` holds the id in a ``ContextVar`` while the route's
  middleware and handler run, so ``RequestIdFilter`` can stamp log records.
  Litestar builds app-level middleware into each *route's* stack: it never
  sees requests that fail before routing (no such path), and an exception
  raised by a middleware inside it (401 from auth, 429 from the rate limit)
  is turned into a response by the app's outer exception handler, which
  sends through the server's ``send``, not ours.
* a ``before_send`` hook, which Litestar runs on every message the app sends
  whatever produced it, writes the header. So every response carries it.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from litestar.config.app import AppConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.plugins import InitPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_RAW_HEADER = HEADER.encode("latin-1")
_SANE = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Where the id chosen for a connection is kept, so the middleware and the
# send hook (which may run without the middleware) agree on one value.
_STATE_KEY = "request_id"

_current: ContextVar[str | None] = ContextVar("taskcore_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served in this context; ``None`` outside one."""
    return _current.get()


def _from_headers(scope: Scope) -> str | None:
    """The caller's id when it is sane. Only the first header counts: a list
    of ids would be ambiguous."""
    for name, value in scope.get("headers", ()):
        if name == _RAW_HEADER:
            text = value.decode("latin-1")
            return text if _SANE.fullmatch(text) else None
    return None


def request_id_of(scope: Scope) -> str:
    """The connection's id: chosen on first use (the caller's or a new uuid4 hex)
    and remembered in the scope's state."""
    state: dict[str, Any] = scope.setdefault("state", {})
    request_id = state.get(_STATE_KEY)
    if not isinstance(request_id, str):
        request_id = _from_headers(scope) or uuid.uuid4().hex
        state[_STATE_KEY] = request_id
    return request_id


class RequestIdMiddleware(ASGIMiddleware):
    """Makes the id visible to logging (``current_request_id``) for the request's duration."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        token = _current.set(request_id_of(scope))
        try:
            await next_app(scope, receive, send)
        finally:
            _current.reset(token)


async def add_request_id_header(message: Message, scope: Scope) -> None:
    """``before_send`` hook: runs for every response the app sends, routed or not."""
    if message["type"] == "http.response.start":
        message.setdefault("headers", [])
        MutableScopeHeaders.from_message(message)[HEADER] = request_id_of(scope)


class RequestIdPlugin(InitPlugin):
    """Installs the middleware as the outermost one (so auth and the rate limit
    log with the id) and the header hook. One line in ``create_app``:
    ``plugins=[RequestIdPlugin()]``."""

    __slots__ = ()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.insert(0, RequestIdMiddleware())
        app_config.before_send.append(add_request_id_header)
        return app_config


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` (``-`` outside a request) so a format can use
    ``%(request_id)s``. Attach it to the *handler*: a logger's filters do not
    see records that propagate up from child loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current.get() or "-"
        return True
