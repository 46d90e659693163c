"""The worker process: open resources, consume until SIGTERM/SIGINT, drain, exit 0.

It serves ``/metrics`` and ``/health/live`` on ``TASKCORE_WORKER_METRICS_PORT``
(0 turns the port off) while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from taskcore.entrypoints.container import Container
from taskcore.entrypoints.lifecycle import open_resources
from taskcore.entrypoints.stopping import StartupStopped, StopRequest
from taskcore.entrypoints.worker_probe import ProbeServer
from taskcore.errors import ConfigurationError
from taskcore.work.worker import Worker

log = logging.getLogger("taskcore.worker")


async def run_worker(container: Container) -> None:
    """The signal handlers go in first: a stop while start-up still waits for a
    service ends the process at once (exit 0), one later drains the worker."""
    stop = container.stop_request()
    stop.attach()
    running: list[Worker] = []

    def stopper(sig: signal.Signals) -> Callable[[], None]:
        def handler() -> None:
            log.info("%s received: %s", sig.name, "draining" if running else "stopping start-up")
            stop.request()
            for worker in running:
                worker.stop()

        return handler

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopper(sig))
    try:
        async with open_resources(container):
            await _consume(container, running, stop)
    except StartupStopped as exc:
        log.info("worker %s before it started: exiting", exc)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _consume(container: Container, running: list[Worker], stop: StopRequest) -> None:
    worker = container.worker()
    running.append(worker)
    if stop.requested:
        worker.stop()
    settings = container.settings()
    probe = _probe(worker, settings.worker_metrics_port)
    log.info(
        "worker consuming queues %s (broker queues %r...) with concurrency %d",
        ", ".join(worker.queues),
        settings.queue_name,
        settings.worker_concurrency,
    )
    try:
        await worker.run()
    finally:
        if probe is not None:
            probe.stop()
    log.info("worker stopped: %s", {k.value: v for k, v in worker.outcomes.items() if v})


def _probe(worker: Worker, port: int) -> ProbeServer | None:
    if not port:
        return None
    try:
        probe = ProbeServer(worker.liveness, port=port).start()
    except OSError as exc:
        message = f"TASKCORE_WORKER_METRICS_PORT: cannot listen on port {port}: {exc}"
        raise ConfigurationError(message) from exc
    log.info("serving /metrics and /health/live on port %d", probe.port)
    return probe
