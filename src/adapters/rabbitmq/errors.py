"""Translating aio-pika, aiormq and socket errors into ``QueueUnavailable``.

The core never sees a driver exception: everything the broker or the network
can throw at this adapter is turned into the one taskcore error at the edge.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from taskcore.errors import QueueUnavailable

# AMQPError, ConnectionError, OSError (TimeoutError included), RuntimeError
# (aiormq's ChannelInvalidStateError), StopAsyncIteration, pamqp errors.
BROKER_ERRORS: tuple[type[BaseException], ...] = CONNECTION_EXCEPTIONS


@contextmanager
def broker_errors(what: str) -> Iterator[None]:
    try:
        yield
    except QueueUnavailable:
        raise
    except TimeoutError as exc:
        raise QueueUnavailable(f"{what}: the broker did not answer in time") from exc
    except BROKER_ERRORS as exc:
        raise QueueUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
