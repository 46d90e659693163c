"""The worker process: open resources, consume until SIGTERM/SIGINT, drain, exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from taskcore.entrypoints.container import Container
from taskcore.entrypoints.lifecycle import open_resources

log = logging.getLogger("taskcore.worker")


async def run_worker(container: Container) -> None:
    async with open_resources(container):
        worker = container.worker()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stopper(worker.stop, sig))
        settings = container.settings()
        log.info("worker consuming %r with concurrency %d", settings.queue_name, settings.worker_concurrency)
        try:
            await worker.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("worker stopped: %s", {k.value: v for k, v in worker.outcomes.items() if v})


def _stopper(stop: Callable[[], None], sig: signal.Signals) -> Callable[[], None]:
    def handler() -> None:
        log.info("%s received: draining", sig.name)
        stop()

    return handler
