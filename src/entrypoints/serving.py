"""Running the ASGI app under uvicorn with the exit code operators expect.

uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so a clean drain
would end with status -15. A drained server has done its job: exit 0.
"""

from __future__ import annotations

import signal
from collections.abc import Generator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn
from litestar import Litestar
from uvicorn.supervisors import Multiprocess

from taskcore.adapters.prometheus import forget_process, shared_metrics_dir
from taskcore.entrypoints.stopping import StopRequest

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    """uvicorn's server, whose stop also reaches a start-up still waiting for services."""

    def __init__(self, config: uvicorn.Config, stop: StopRequest | None = None) -> None:
        super().__init__(config)
        self._stop = stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._stop is not None:
            self._stop.request()

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class _Supervisor(Multiprocess):
    """uvicorn's supervisor of ``--workers`` processes (it restarts one that
    dies); a dead process's live metrics are dropped with it."""

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                forget_process(pid)


def serve_processes(
    factory: str, *, workers: int, host: str, port: int, log_level: str, grace_s: int
) -> None:
    """``workers`` processes on one listening socket, each building its app by
    calling ``factory`` ("module:function"), as ``uvicorn --workers --factory``
    does; SIGTERM drains every one of them. Returns once all have exited."""
    config = _config(factory, host, port, log_level, grace_s, factory=True, workers=workers)
    with shared_metrics_dir():
        _Supervisor(config, sockets=[config.bind_socket()]).run()


def serve(
    app: Litestar, *, host: str, port: int, log_level: str, grace_s: int, stop: StopRequest | None = None
) -> None:
    """Serve until SIGTERM/SIGINT; ``stop`` carries the signal to a start-up still under way."""
    _Server(_config(app, host, port, log_level, grace_s), stop).run()


def _config(
    app: Litestar | str, host: str, port: int, log_level: str, grace_s: int, **more: Any
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=grace_s,
        lifespan="on",
        # uvicorn's own handlers would write plain text beside our JSON lines:
        # its loggers propagate to the handler the CLI installed instead.
        log_config=None,
        **more,
    )
