"""Driver errors become taskcore errors here, at the adapter's edge.

The service and the entrypoints only know taskcore's hierarchy: a database
that does not answer is ``RepositoryUnavailable`` (callers may retry or answer
503), anything else the server refuses is ``RepositoryError`` carrying the
SQLSTATE and constraint so a log line says what broke.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from taskcore.errors import RepositoryUnavailable, TaskcoreError, UnstorableValue


class RepositoryError(TaskcoreError):
    """The task database refused the statement."""


@contextmanager
def wrap_errors(action: str) -> Iterator[None]:
    """Re-raise psycopg errors met while doing ``action`` as taskcore errors.

    A sync context manager, so it also wraps the awaits of an ``async`` block.
    ``OperationalError`` covers lost and refused connections, server shutdown,
    cancelled statements, and the pool's ``PoolTimeout`` and ``PoolClosed``
    (its subclasses).
    """
    try:
        yield
    except psycopg.OperationalError as exc:
        raise RepositoryUnavailable(
            f"cannot {action}: {_describe(exc)}",
            sqlstate=exc.sqlstate,
        ) from exc
    except psycopg.DataError as exc:
        # A value PostgreSQL cannot hold (a NUL in text or jsonb): the caller's
        # data is at fault, not the database.
        raise UnstorableValue(f"cannot {action}: {_describe(exc)}", sqlstate=exc.sqlstate) from exc
    except psycopg.Error as exc:
        raise RepositoryError(
            f"cannot {action}: {_describe(exc)}",
            sqlstate=exc.sqlstate,
            constraint=exc.diag.constraint_name,
        ) from exc


def _describe(exc: psycopg.Error) -> str:
    message = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {message}"
