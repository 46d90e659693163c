"""Driver errors become taskcore errors here, at the adapter's edge.

The service and the entrypoints only know taskcore's hierarchy: a database
that does not answer is ``RepositoryUnavailable`` (callers may retry or answer
503), a rule of the domain the schema keeps is that rule's error (the unique
key index: ``UniqueKeyTaken``), anything else the server refuses is
``RepositoryError`` carrying the SQLSTATE and constraint so a log line says
what broke.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from taskcore.errors import RepositoryUnavailable, TaskcoreError, UnstorableValue
from taskcore.model.uniqueness import UniqueKeyTaken

UNIQUE_KEY_INDEX = "tasks_unique_key_idx"


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
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name != UNIQUE_KEY_INDEX:
            raise _refused(action, exc) from exc
        # A rule of the domain, kept by the index: a retry whose unique key another task holds.
        raise UniqueKeyTaken(
            f"cannot {action}: an unfinished task of its type and owner has its unique key"
        ) from exc
    except psycopg.Error as exc:
        raise _refused(action, exc) from exc


def _refused(action: str, exc: psycopg.Error) -> RepositoryError:
    return RepositoryError(
        f"cannot {action}: {_describe(exc)}",
        sqlstate=exc.sqlstate,
        constraint=exc.diag.constraint_name,
    )


def _describe(exc: psycopg.Error) -> str:
    message = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {message}"
