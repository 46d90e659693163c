"""``taskcore``: run the API, a worker, or both in one process for development."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import click
import msgspec
from litestar import Litestar

from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.http.auth_config import AuthMode, auth_mode
from taskcore.entrypoints.http.health_controller import Ready, readiness
from taskcore.entrypoints.lifecycle import dependencies, migrate_database, open_resources
from taskcore.entrypoints.loading import load_registry
from taskcore.entrypoints.logs import LogFormat, configure_logging, worker_id
from taskcore.entrypoints.serving import serve, serve_processes
from taskcore.entrypoints.settings import Settings, load_settings
from taskcore.entrypoints.tokens import mint, parse_duration
from taskcore.entrypoints.verify import VerificationFailed
from taskcore.entrypoints.verify import verify as run_verify
from taskcore.entrypoints.worker_process import run_worker
from taskcore.errors import ConfigurationError, InvalidInput, ServiceUnavailable
from taskcore.model.queues import QueueView, UnknownQueue
from taskcore.model.schedules import Schedule, ScheduleNotFound
from taskcore.queues.admin import QueueAdmin
from taskcore.schedules.admin import ScheduleAdmin

log = logging.getLogger("taskcore")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

DEFAULT_PORT = 8005
PRUNE_PROGRESS_EVERY = 10_000  # taskcore prune logs its count this often


def _app_option(fn: F) -> F:
    return click.option(
        "--app",
        "app_spec",
        metavar="MODULE:ATTR",
        default=None,
        help="Your HandlerRegistry (or a function returning one). Default: the built-in handlers. "
        "Env: TASKCORE_APP.",
    )(fn)


def _settings(log_format: LogFormat = "console", worker: str | None = None, **overrides: Any) -> Settings:
    """Settings, and logging set up from them: ``log_format`` unless
    ``TASKCORE_LOG_FORMAT`` says otherwise; ``worker`` names a worker process."""
    try:
        settings = load_settings(**overrides)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    configure_logging(settings.log_level, settings.log_format or log_format, worker=worker)
    return settings


def _compose(
    app_spec: str | None,
    *,
    networked: bool = False,
    log_format: LogFormat = "console",
    worker: str | None = None,
    **overrides: Any,
) -> tuple[Settings, Container]:
    """Settings, the user's registry and the container. ``networked`` processes
    (``api``, ``worker``) need every service URL: memory adapters in separate
    processes would silently share nothing; they log JSON lines by default."""
    settings = _settings(log_format, worker, app=app_spec, **overrides)
    if networked and (missing := settings.missing_services()):
        raise click.ClickException(
            f"{', '.join(missing)} not set: `taskcore api` and `taskcore worker` need PostgreSQL, "
            "Redis and RabbitMQ (use `taskcore dev` to run everything in one process)"
        )
    try:
        registry = load_registry(settings.app, reverse_delay_s=settings.reverse_delay_s)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    return settings, build_container(settings, registry)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a process's main coroutine on uvloop (as uvicorn runs the API: the
    stdlib loop was a third of a worker's CPU); an unreachable service is a
    clean exit 1."""
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(coroutine)
    except (ServiceUnavailable, ConfigurationError) as exc:
        raise click.ClickException(str(exc)) from exc


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not on this platform: the standard loop
        return None
    return uvloop.new_event_loop


def _serve(
    container: Container, host: str, port: int, *, embedded_worker: bool, default_auth: AuthMode
) -> None:
    settings = container.settings()
    serve(
        _build_app(container, embedded_worker=embedded_worker, default_auth=default_auth),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        grace_s=math.ceil(settings.shutdown_grace_s),
        stop=container.stop_request(),
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
    if auth_mode(settings, "none") == "none":
        click.echo("taskcore dev: authentication is off (set TASKCORE_AUTH=jwt to turn it on)", err=True)
    _serve(container, host, port, embedded_worker=True, default_auth="none")


@main.command()
@_app_option
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    envvar="TASKCORE_API_WORKERS",
    help="API processes sharing the port, for machines with more cores (env: TASKCORE_API_WORKERS).",
)
def api(app_spec: str | None, host: str, port: int, workers: int) -> None:
    """The HTTP API alone; workers run as separate processes."""
    settings, container = _compose(app_spec, networked=True, log_format="json")
    if workers == 1:
        _serve(container, host, port, embedded_worker=False, default_auth="jwt")
        return
    _build_api(container)  # a configuration mistake stops here, not in every process
    if app_spec is not None:
        os.environ["TASKCORE_APP"] = app_spec  # what each process loads
    serve_processes(
        f"{__name__}:{api_app.__name__}",
        workers=workers,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        grace_s=math.ceil(settings.shutdown_grace_s),
    )


def api_app() -> Litestar:
    """What each process of ``taskcore api --workers N`` serves: settings,
    registry and container from the environment, as ``taskcore api`` builds them."""
    _, container = _compose(None, networked=True, log_format="json")
    return _build_api(container)


def _build_api(container: Container) -> Litestar:
    return _build_app(container, embedded_worker=False, default_auth="jwt")


def _build_app(container: Container, *, embedded_worker: bool, default_auth: AuthMode) -> Litestar:
    try:
        return create_app(container, embedded_worker=embedded_worker, default_auth=default_auth)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@_app_option
@click.option(
    "--concurrency", type=int, default=None, help="Tasks run at once (TASKCORE_WORKER_CONCURRENCY)."
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME",
    help="Consume only this queue; repeat for several. Default: every queue of the registry "
    "(TASKCORE_WORKER_QUEUES, comma-separated).",
)
def worker(app_spec: str | None, concurrency: int | None, queues: tuple[str, ...]) -> None:
    """A worker: consumes its queues and runs tasks until SIGTERM, then drains.
    Serves /metrics and /health/live on TASKCORE_WORKER_METRICS_PORT (0: off)."""
    _, container = _compose(
        app_spec,
        networked=True,
        log_format="json",
        worker=worker_id(),
        worker_concurrency=concurrency,
        worker_queues=",".join(queues) or None,
    )
    try:
        container.worker_queues()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    _run(run_worker(container))


@main.command()
def migrate() -> None:
    """Apply pending database migrations (safe to run from several processes at once)."""
    settings = _settings()
    if not settings.database_url:
        raise click.ClickException("TASKCORE_DATABASE_URL not set")
    applied = _run(migrate_database(settings))
    click.echo(f"applied: {', '.join(applied)}" if applied else "database schema is up to date")


@main.command()
@_app_option
def ready(app_spec: str | None) -> None:
    """Check each configured service once and print the readiness report;
    exit 1 unless ready (a container health check)."""
    _, container = _compose(app_spec, startup_attempts=1, migrate_on_start=False)

    async def report() -> Ready:
        async with open_resources(container):
            return await readiness(dependencies(container))

    result = _run(report())
    click.echo(msgspec.json.encode(result).decode())
    if result.status != "ready":
        sys.exit(1)


@main.group()
def queue() -> None:
    """List, pause and resume the named queues (needs TASKCORE_DATABASE_URL;
    the broker's counts also TASKCORE_AMQP_URL)."""


def _queue_command(app_spec: str | None, action: Callable[[QueueAdmin], Awaitable[Any]]) -> Any:
    return _database_command(
        app_spec, lambda container: action(container.queue_admin()), broker=True, refused=(UnknownQueue,)
    )


def _database_command(
    app_spec: str | None,
    action: Callable[[Container], Awaitable[Any]],
    *,
    broker: bool,
    refused: tuple[type[Exception], ...],
) -> Any:
    """``action`` on a container whose database (and broker, if ``broker`` and
    set) is open; what ``refused`` names becomes the command's error."""
    settings, container = _compose(app_spec, startup_attempts=1, migrate_on_start=False)
    if not settings.database_url:
        raise click.ClickException("TASKCORE_DATABASE_URL not set: this lives in the database")

    async def run() -> Any:
        async with AsyncExitStack() as stack:
            database = container.database()
            await database.open()
            stack.push_async_callback(database.close)
            if broker and settings.amqp_url:
                queue = container.queue()
                await queue.open()
                stack.push_async_callback(queue.close)
            return await action(container)

    try:
        return _run(run())
    except refused as exc:
        raise click.ClickException(str(exc)) from exc


def _show(view: QueueView) -> str:
    unknown = "?"
    ready = unknown if view.ready is None else view.ready
    dead = unknown if view.dead_letters is None else view.dead_letters
    state = "paused" if view.paused else "running"
    return (
        f"{view.name}: {state}; tasks running {view.running}, waiting {view.waiting},"
        f" scheduled {view.scheduled}; wake-ups ready {ready}, dead letters {dead}"
    )


@queue.command("list")
@_app_option
def queue_list(app_spec: str | None) -> None:
    """Every queue of the registry, paused or not, and what it holds."""
    for view in _queue_command(app_spec, lambda admin: admin.overview()):
        click.echo(_show(view))


@queue.command("pause")
@_app_option
@click.argument("name")
def queue_pause(app_spec: str | None, name: str) -> None:
    """Pause NAME: submits are accepted, running tasks finish, nothing new starts."""
    click.echo(_show(_queue_command(app_spec, lambda admin: admin.pause(name))))


@queue.command("resume")
@_app_option
@click.argument("name")
def queue_resume(app_spec: str | None, name: str) -> None:
    """Resume NAME: its backlog runs again, in priority order."""
    click.echo(_show(_queue_command(app_spec, lambda admin: admin.resume(name))))


@main.group()
def schedule() -> None:
    """List, pause and resume the periodic schedules (needs TASKCORE_DATABASE_URL)."""


def _schedule_command(app_spec: str | None, action: Callable[[ScheduleAdmin], Awaitable[Any]]) -> Any:
    return _database_command(
        app_spec,
        lambda container: action(container.schedule_admin()),
        broker=False,
        refused=(ScheduleNotFound, InvalidInput),
    )


def _show_schedule(view: Schedule) -> str:
    timing = f"cron {view.cron!r} ({view.timezone})" if view.cron else f"every {view.every_s} s"
    state = "retired" if view.retired_at else "paused" if view.paused else "active"
    owner = "system" if view.system else f"owner {view.owner}"
    last = view.last_fire_at.isoformat() if view.last_fire_at else "never"
    upcoming = view.next_fire_at.isoformat() if view.next_fire_at and view.active else "-"
    error = f"; error: {view.error}" if view.error else ""
    return f"{view.name}: {view.type}, {timing}, {state}, {owner}; next {upcoming}, last {last}{error}"


@schedule.command("list")
@_app_option
def schedule_list(app_spec: str | None) -> None:
    """Every schedule, with its next and last fire times."""
    for view in _schedule_command(app_spec, lambda admin: admin.schedules(None)):
        click.echo(_show_schedule(view))


@schedule.command("pause")
@_app_option
@click.argument("name")
def schedule_pause(app_spec: str | None, name: str) -> None:
    """Pause NAME: it submits nothing until it is resumed."""
    click.echo(_show_schedule(_schedule_command(app_spec, lambda admin: admin.pause(name, None))))


@schedule.command("resume")
@_app_option
@click.argument("name")
def schedule_resume(app_spec: str | None, name: str) -> None:
    """Resume NAME from its next fire time (what it missed while paused is not caught up)."""
    click.echo(_show_schedule(_schedule_command(app_spec, lambda admin: admin.resume(name, None))))


@main.command()
@_app_option
@click.option(
    "--older-than",
    "older_than",
    metavar="AGE",
    default=None,
    help="Delete the tasks that finished more than AGE ago (30s, 15m, 1h, 7d), whatever their type's "
    "retention, except those of handlers with retention_s=0. Default: each type's retention "
    "(TASKCORE_RETENTION_S, or the handler's retention_s).",
)
def prune(app_spec: str | None, older_than: str | None) -> None:
    """Delete finished tasks past their retention now, batch by batch until none is left, and print
    how many went. Never an unfinished task, nor one an unexpired Idempotency-Key names. Safe while
    workers sweep: each skips what the other holds. Needs TASKCORE_DATABASE_URL."""
    try:
        age = None if older_than is None else parse_duration(older_than, option="--older-than")
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from exc
    settings, container = _compose(app_spec, startup_attempts=1, migrate_on_start=False)
    if not settings.database_url:
        raise click.ClickException("TASKCORE_DATABASE_URL not set: taskcore prune deletes from the database")
    retention = container.retention()
    cutoffs = retention.cutoffs(older_than=age)
    if cutoffs.keeps_all:
        click.echo(
            "nothing pruned: every type is kept forever (TASKCORE_RETENTION_S=0); --older-than AGE prunes"
        )
        return

    async def run() -> int:
        database = container.database()
        await database.open()
        pruned = 0
        try:
            async for batch in retention.prune(older_than=age):
                pruned += batch
                if batch and pruned % PRUNE_PROGRESS_EVERY < batch:
                    log.info("%d finished tasks pruned so far", pruned)
        finally:
            await database.close()
        return pruned

    pruned = _run(run())
    which = "past their retention" if age is None else f"older than {older_than}"
    kept = f"; kept forever by their handlers: {', '.join(cutoffs.kept)}" if cutoffs.kept else ""
    click.echo(f"pruned {pruned} finished tasks {which}{kept}")


@main.command()
@click.option("--sub", required=True, help="The token's subject: the owner of the tasks it submits.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    default=("tasks:read", "tasks:write"),
    show_default=True,
    help="Repeat for several: tasks:read, tasks:write, tasks:admin.",
)
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 30s, 15m, 1h, 7d.")
def token(sub: str, scopes: tuple[str, ...], ttl: str) -> None:
    """Mint a development token signed with TASKCORE_JWT_SECRET (HS256)."""
    settings = _settings()
    try:
        click.echo(mint(settings, sub=sub, scopes=list(scopes), ttl=parse_duration(ttl)))
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("url", default="http://127.0.0.1:8005")
@click.option(
    "--timeout", "timeout_s", default=30.0, show_default=True, help="Seconds to wait for COMPLETED."
)
@click.option("--token", default=None, envvar="TASKCORE_TOKEN", help="Bearer token when auth is on.")
def verify(url: str, timeout_s: float, token: str | None) -> None:
    """Submit a reverse task to a running stack at URL, wait, check the result, print timings."""
    try:
        timings = run_verify(url, timeout_s=timeout_s, token=token)
    except VerificationFailed as exc:
        raise click.ClickException(f"verification failed: {exc}") from exc
    click.echo(
        f"ok: task {timings.task_id} submitted in {timings.submit_s * 1000:.1f} ms, "
        f"COMPLETED with the right result after {timings.complete_s:.2f} s ({timings.polls} polls)"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
