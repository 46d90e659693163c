"""taskcore: durable asynchronous tasks with a small, pure core.

Register handlers on a ``HandlerRegistry``, compose a ``TaskService`` (submit,
read) and a ``Worker`` (run) over the ports in ``taskcore.ports``; the
``taskcore.adapters`` package has PostgreSQL, Redis, RabbitMQ and in-memory
implementations of them, and ``taskcore.entrypoints`` the HTTP API, the worker
process and the CLI.
"""

from taskcore.clock import SystemClock
from taskcore.config import CoreConfig, RetryPolicy
from taskcore.errors import (
    CacheUnavailable,
    ConfigurationError,
    HandlerRegistrationError,
    InvalidInput,
    InvalidTransition,
    QueueUnavailable,
    RepositoryUnavailable,
    ServiceUnavailable,
    TaskcoreError,
    TaskNotFound,
    UnknownTaskType,
    UnstorableValue,
)
from taskcore.handlers.builtin import register_builtins
from taskcore.handlers.context import TaskContext
from taskcore.handlers.registry import Handler, HandlerRegistry
from taskcore.model.status import FINAL_STATUSES, TaskStatus
from taskcore.model.task import NewTask, Task
from taskcore.submit.service import TaskService
from taskcore.transitions.dispatch import Dispatcher
from taskcore.work.processor import Outcome, TaskProcessor
from taskcore.work.sweeper import Sweeper, SweepReport
from taskcore.work.worker import Worker
from taskcore.workflows.builder import Workflow

__all__ = [
    "FINAL_STATUSES",
    "CacheUnavailable",
    "ConfigurationError",
    "CoreConfig",
    "Dispatcher",
    "Handler",
    "HandlerRegistrationError",
    "HandlerRegistry",
    "InvalidInput",
    "InvalidTransition",
    "NewTask",
    "Outcome",
    "QueueUnavailable",
    "RepositoryUnavailable",
    "RetryPolicy",
    "ServiceUnavailable",
    "SweepReport",
    "Sweeper",
    "SystemClock",
    "Task",
    "TaskContext",
    "TaskNotFound",
    "TaskProcessor",
    "TaskService",
    "TaskStatus",
    "TaskcoreError",
    "UnknownTaskType",
    "UnstorableValue",
    "Worker",
    "Workflow",
    "register_builtins",
]
