"""``/metrics`` on the API, and the HTTP metrics, from Litestar's Prometheus plugin.

``PrometheusMiddleware`` counts requests by method, route template
(``/tasks/{task_id:int}``, not each id: ``group_path``) and status, and times
them, as ``taskcore_http_requests_total``, ``taskcore_http_request_duration_seconds``
and ``taskcore_http_requests_in_progress``.

One gap is closed here: a response made from an exception raised by a
middleware *inside* it (401 from authentication, 429 from the rate limit)
is sent by the app's outer exception handler, past the middleware, which
would then count the request as a 200. Litestar puts an exception handler
between a route's middleware and its handler for the same reason; this puts
one between the metrics middleware and the middleware it wraps.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, Response, get
from litestar._asgi.utils import wrap_in_exception_handler
from litestar.enums import ScopeType
from litestar.middleware.base import DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from taskcore.adapters.prometheus import render

PATH = "/metrics"


class _Middleware(PrometheusMiddleware):
    """Litestar's metrics, names and labels, at a fraction of the cost per request.

    The plugin builds a ``Request``, a label dict and four ``labels()`` lookups
    (each a lock and a tuple of strings) for every request: a tenth of the
    API's CPU on a cached read. Here the child metrics of each label set
    (method, route template, status, app name; bounded by the routes) are
    looked up once and kept. Anything this does not cover (a websocket,
    extra labels, exemplars, excluded methods) goes through the plugin's own
    ``__call__``.
    """

    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        super().__init__(wrap_in_exception_handler(app), config)
        self._plain = (
            not (config.labels or config.exemplars or config.excluded_http_methods) and config.group_path
        )
        self._in_progress: dict[tuple[str, str], Any] = {}
        self._finished: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def _labels(self, method: str, path: str, status: int) -> dict[str, str | int | float]:
        return {"method": method, "path": path, "status_code": status, "app_name": self._config.app_name}

    def _gauge(self, method: str, path: str) -> Any:
        child = self._in_progress.get((method, path))
        if child is None:
            labels = self._labels(method, path, 200)  # the plugin labels this gauge with 200 always
            child = self.requests_in_progress(labels).labels(*labels.values())
            self._in_progress[(method, path)] = child
        return child

    def _children(self, method: str, path: str, status: int) -> tuple[Any, Any, Any]:
        children = self._finished.get((method, path, status))
        if children is None:
            labels = self._labels(method, path, status)
            values = [*labels.values()]
            children = (
                self.request_count(labels).labels(*values),
                self.request_time(labels).labels(*values),
                self.requests_error_count(labels).labels(*values) if status >= 500 else None,
            )
            self._finished[(method, path, status)] = children
        return children

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._plain or scope["type"] != ScopeType.HTTP:
            await super().__call__(scope, receive, send)
            return
        method, path = scope["method"], scope["path_template"]
        status, start, duration = 200, time.perf_counter(), 0.0

        async def timed_send(message: Message) -> None:
            nonlocal status, duration
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                duration = time.perf_counter() - start
            await send(message)

        in_progress = self._gauge(method, path)
        in_progress.inc()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            in_progress.dec()
            count, timing, errors = self._children(method, path, status)
            if errors is not None:
                errors.inc()
            count.inc()
            timing.observe(duration)


def http_metrics() -> DefineMiddleware:
    return PrometheusConfig(
        app_name="taskcore",
        prefix="taskcore_http",
        group_path=True,
        exclude=[f"^{PATH}$"],
        middleware_class=_Middleware,
    ).middleware


class MetricsController(Controller):
    path = PATH

    @get("/", include_in_schema=False, sync_to_thread=False)
    def metrics(self, request: Request) -> Response[bytes]:  # type: ignore[type-arg]
        """Prometheus exposition; every API process's values when PROMETHEUS_MULTIPROC_DIR is set."""
        body, content_type = render(request.headers.get("accept"))
        return Response(body, headers={"content-type": content_type})
