"""Running the ASGI app under uvicorn with the exit code operators expect.

uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so a clean drain
would end with status -15. A drained server has done its job: exit 0.
"""

from __future__ import annotations

import signal
from collections.abc import Generator
from contextlib import contextmanager

import uvicorn
from litestar import Litestar

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def serve(app: Litestar, *, host: str, port: int, log_level: str, grace_s: int) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=grace_s,
        lifespan="on",
        # uvicorn's own handlers would write plain text beside our JSON lines:
        # its loggers propagate to the handler the CLI installed instead.
        log_config=None,
    )
    _Server(config).run()
