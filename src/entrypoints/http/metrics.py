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

from litestar import Controller, Request, Response, get
from litestar._asgi.utils import wrap_in_exception_handler
from litestar.middleware.base import DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.types import ASGIApp

from taskcore.adapters.prometheus import render

PATH = "/metrics"


class _Middleware(PrometheusMiddleware):
    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        super().__init__(wrap_in_exception_handler(app), config)


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
