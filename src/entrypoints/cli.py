"""``taskcore``: run the API, a worker, or both in one process for development."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.loading import load_registry
from taskcore.entrypoints.serving import serve
from taskcore.entrypoints.settings import Settings, load_settings
from taskcore.entrypoints.worker_process import run_worker
from taskcore.errors import ConfigurationError

log = logging.getLogger("taskcore")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PORT = 8005


def _app_option(fn: F) -> F:
    return click.option(
        "--app",
        "app_spec",
        metavar="MODULE:ATTR",
        default=None,
        help="Your HandlerRegistry (or a function returning one). Default: the built-in handlers. "
        "Env: TASKCORE_APP.",
    )(fn)


def _compose(app_spec: str | None, **overrides: Any) -> tuple[Settings, Container]:
    try:
        settings = load_settings(app=app_spec, **overrides)
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        registry = load_registry(settings.app, reverse_delay_s=settings.reverse_delay_s)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    return settings, build_container(settings, registry)


def _serve(container: Container, host: str, port: int, *, embedded_worker: bool) -> None:
    settings = container.settings()
    serve(
        create_app(container, embedded_worker=embedded_worker),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        grace_s=math.ceil(settings.shutdown_grace_s),
    )


@click.group()
@click.version_option(package_name="taskcore")
def main() -> None:
    """taskcore: durable asynchronous tasks over HTTP."""


@main.command()
@_app_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option(
    "--concurrency", type=int, default=None, help="Worker concurrency (TASKCORE_WORKER_CONCURRENCY)."
)
def dev(app_spec: str | None, host: str, port: int, concurrency: int | None) -> None:
    """API and worker in one process. Runs on the memory adapters unless
    service URLs are set; Swagger UI at /docs."""
    settings, container = _compose(app_spec, worker_concurrency=concurrency)
    if settings.embedded:
        log.info("embedded mode: memory adapters, nothing is persisted")
    click.echo(f"taskcore dev: http://{host}:{port}/docs", err=True)
    _serve(container, host, port, embedded_worker=True)


@main.command()
@_app_option
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
def api(app_spec: str | None, host: str, port: int) -> None:
    """The HTTP API alone; workers run as separate processes."""
    _, container = _compose(app_spec)
    _serve(container, host, port, embedded_worker=False)


@main.command()
@_app_option
@click.option(
    "--concurrency", type=int, default=None, help="Tasks run at once (TASKCORE_WORKER_CONCURRENCY)."
)
def worker(app_spec: str | None, concurrency: int | None) -> None:
    """A worker: consumes the queue and runs tasks until SIGTERM, then drains."""
    _, container = _compose(app_spec, worker_concurrency=concurrency)
    asyncio.run(run_worker(container))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
