"""Build the Litestar application around a container."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import Middleware

from taskcore.dashboard.stats import StatsService
from taskcore.entrypoints.container import Container
from taskcore.entrypoints.http.auth import jwt_middleware
from taskcore.entrypoints.http.auth_config import AuthMode, build_verifier
from taskcore.entrypoints.http.batch_controller import BatchController
from taskcore.entrypoints.http.bulk_controller import BulkController
from taskcore.entrypoints.http.dashboard_controller import DashboardController, StatsController
from taskcore.entrypoints.http.health_controller import Dependencies, HealthController
from taskcore.entrypoints.http.metrics import MetricsController, http_metrics
from taskcore.entrypoints.http.problems import EXCEPTION_HANDLERS
from taskcore.entrypoints.http.queues_controller import QueueController
from taskcore.entrypoints.http.rate_limit import rate_limit_middleware
from taskcore.entrypoints.http.request_id import RequestIdPlugin
from taskcore.entrypoints.http.schedules_controller import ScheduleController
from taskcore.entrypoints.http.submit_schema import SubmitBodySchemaPlugin
from taskcore.entrypoints.http.tasks_controller import TaskController, TaskEndpoints
from taskcore.entrypoints.http.tracing import TraceContinuation
from taskcore.entrypoints.http.webhooks_controller import WebhookController
from taskcore.entrypoints.http.workflows_controller import WorkflowController
from taskcore.entrypoints.lifecycle import dependencies, open_resources
from taskcore.entrypoints.stopping import StartupStopped
from taskcore.queues.admin import QueueAdmin
from taskcore.schedules.admin import ScheduleAdmin
from taskcore.tracing import NoTracing
from taskcore.webhooks.admin import WebhookAdmin
from taskcore.workflows.service import WorkflowService

log = logging.getLogger("taskcore.http")

# Readable without a token: the API's documentation, the probes, the metrics and
# the dashboard's page (its data, /stats, needs a token).
PUBLIC_PATHS = ["^/docs", "^/health/", "^/metrics$", "^/dashboard(/|$)"]


def create_app(
    container: Container, *, embedded_worker: bool = False, default_auth: AuthMode = "none"
) -> Litestar:
    """``embedded_worker`` runs a worker in the API's event loop (``taskcore dev``);
    ``default_auth`` applies when ``TASKCORE_AUTH`` is not set."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        stop = container.stop_request()
        stop.attach()
        async with AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(open_resources(container))
            except StartupStopped as exc:
                # uvicorn has its stop already: start-up "succeeds" with
                # nothing open, and the server exits at once, with 0.
                log.info("API %s before it started: exiting", exc)
                yield
                return
            await stack.enter_async_context(_listening(container))
            if not embedded_worker:
                yield
                return
            worker = container.worker()
            running = asyncio.create_task(worker.run(), name="taskcore-worker")
            log.info("embedded worker started (concurrency %d)", container.settings().worker_concurrency)
            try:
                yield
            finally:
                worker.stop()
                await running

    def provide_tasks() -> TaskEndpoints:
        # Built on first use (tests override providers after create_app), then cached by Litestar.
        return TaskEndpoints(
            service=container.service(),
            listing=container.tasks(),
            watcher=container.watcher(),
            clock=container.clock(),
        )

    def provide_stats() -> StatsService:
        return container.stats()

    def provide_queues() -> QueueAdmin:
        return container.queue_admin()

    def provide_workflows() -> WorkflowService:
        return container.workflows()

    def provide_webhooks() -> WebhookAdmin:
        return container.webhook_admin()

    def provide_schedules() -> ScheduleAdmin:
        return container.schedule_admin()

    def provide_dependencies() -> Dependencies:
        return Dependencies(dependencies(container))

    settings = container.settings()
    verifier = build_verifier(settings, default_auth)
    if verifier is None:
        log.info("authentication is off (TASKCORE_AUTH=none): every caller sees every task")
    security: dict[str, Any] = {}
    if verifier is not None:
        security = {
            "components": Components(
                security_schemes={
                    "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
        }
    # Only the task routes need a token; /docs and /health/* stay public.
    tasks = Router(
        path="/",
        route_handlers=[
            TaskController,
            BatchController,
            BulkController,
            StatsController,
            QueueController,
            WorkflowController,
            WebhookController,
            ScheduleController,
        ],
        security=[{"BearerToken": []}] if verifier is not None else None,
    )
    # Order matters: the metrics count what auth and the rate limit answer too,
    # and the rate limit keys on the principal the auth middleware sets.
    middleware: list[Middleware] = [http_metrics()]
    tracing = container.tracing()
    if not isinstance(tracing, NoTracing):  # a client's traceparent continues into its submits
        middleware.append(TraceContinuation(tracing))
    if verifier:
        middleware.append(jwt_middleware(verifier, exclude=PUBLIC_PATHS))
    if settings.rate_limit_submit_per_minute:
        middleware.append(rate_limit_middleware(settings.rate_limit_submit_per_minute))
    return Litestar(
        route_handlers=[tasks, HealthController, MetricsController, DashboardController],
        dependencies={
            "tasks": Provide(provide_tasks, use_cache=True, sync_to_thread=False),
            "stats": Provide(provide_stats, sync_to_thread=False),
            "queues": Provide(provide_queues, sync_to_thread=False),
            "workflows": Provide(provide_workflows, sync_to_thread=False),
            "webhooks": Provide(provide_webhooks, sync_to_thread=False),
            "schedules": Provide(provide_schedules, sync_to_thread=False),
            "dependencies": Provide(provide_dependencies, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        middleware=middleware,
        # The POST /tasks/ body schema lists the registry's types and their inputs.
        plugins=[RequestIdPlugin(), SubmitBodySchemaPlugin(container.registry())],
        openapi_config=OpenAPIConfig(
            title="taskcore",
            version="0.1.0",
            description="Submit tasks, read their status and results.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/")],
            **security,
        ),
        debug=False,
        # Logging is the CLI's (JSON or console, with the request and task
        # context): Litestar's default config would replace the root handler.
        logging_config=None,
    )


@asynccontextmanager
async def _listening(container: Container) -> AsyncIterator[None]:
    """Keep the process's change-feed subscription while the app serves."""
    listening = asyncio.create_task(container.listener().run(), name="taskcore-change-listener")
    try:
        yield
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
