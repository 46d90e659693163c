"""One exception hierarchy for everything the core can refuse or fail at.

Adapters translate driver errors into these at their edge, so the service and
the entrypoints never catch a psycopg, redis or aio-pika exception. Each class's
docstring is its default message.
"""

from __future__ import annotations

from typing import Any


class TaskcoreError(Exception):
    """A taskcore operation failed."""

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.fields = fields
        super().__init__(message or (self.__doc__ or "").strip())


class TaskNotFound(TaskcoreError):
    """No task has this id."""


class InvalidTransition(TaskcoreError):
    """The task's current status does not allow this change."""


class UnknownTaskType(TaskcoreError):
    """No handler is registered under this task type."""


class InvalidInput(TaskcoreError):
    """The input does not match the handler's declared input type."""


class UnstorableValue(TaskcoreError):
    """The value cannot be stored (for example a NUL character, which PostgreSQL text cannot hold)."""


class HandlerRegistrationError(TaskcoreError):
    """The handler cannot be registered."""


class ConfigurationError(TaskcoreError):
    """A setting has a value taskcore cannot use."""


class ServiceUnavailable(TaskcoreError):
    """A backing service (database, broker or cache) did not answer."""


class CacheUnavailable(ServiceUnavailable):
    """The cache did not answer; callers fall back to the repository."""


class QueueUnavailable(ServiceUnavailable):
    """The broker did not accept the message."""


class RepositoryUnavailable(ServiceUnavailable):
    """The task database did not answer."""


class ChangeFeedUnavailable(ServiceUnavailable):
    """The change feed did not answer; waiting readers fall back to re-reading the database."""
