"""Log lines: JSON for machines (``taskcore api``/``worker``), readable text for people (``dev``).

Every record gets the context it was written in, from context variables: the
HTTP request's id, the task a worker handles (id, type, attempt) and the
worker's id. In JSON those are fields (absent when unknown); in the console
format they go in brackets before the message.

JSON is written by python-json-logger's msgspec formatter. Nothing here logs request bodies,
headers or task inputs; the core logs task ids, types and error messages.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any, Literal, TextIO

from pythonjsonlogger.msgspec import MsgspecFormatter

from taskcore.entrypoints.http.request_id import current_request_id
from taskcore.work.log_context import current_task

LogFormat = Literal["json", "console"]

ACCESS_LOGGER = "uvicorn.access"
CONTEXT_FIELDS = ("request_id", "task_id", "type", "attempt", "worker_id")


def worker_id() -> str:
    """Names this worker process in logs (the same name as its broker connection)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ContextFilter(logging.Filter):
    """Copies the context onto each record. On the handler, so records that
    propagate from every logger pass through it."""

    def __init__(self, worker: str | None = None) -> None:
        super().__init__()
        self._worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        task = current_task()
        record.request_id = current_request_id()
        record.task_id = task.task_id if task else None
        record.type = task.type if task else None
        record.attempt = task.attempt if task else None
        record.worker_id = self._worker
        return True


class _Json(MsgspecFormatter):
    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        for field in CONTEXT_FIELDS:
            if log_data.get(field) is None:
                log_data.pop(field, None)
        log_data.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
        return log_data


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger [context]: message``, the context as ``key=value`` pairs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(context)s]: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        pairs = [
            f"{name}={value}" for name in CONTEXT_FIELDS if (value := getattr(record, name, None)) is not None
        ]
        record.context = " ".join(pairs) or "-"
        return super().format(record)


def json_formatter() -> logging.Formatter:
    return _Json(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def log_handler(
    log_format: LogFormat, *, worker: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter(worker))
    handler.setFormatter(json_formatter() if log_format == "json" else ConsoleFormatter())
    return handler


class _AccessLogger(logging.Logger):
    """uvicorn's access logger, without the caller lookup: every access line
    comes from the same line of uvicorn, and walking the stack to find it was
    a twentieth of the API's CPU on a cached read. ``stack_info`` still works."""

    def findCaller(self, stack_info: bool = False, stacklevel: int = 1) -> tuple[str, int, str, str | None]:
        if stack_info:
            return super().findCaller(stack_info, stacklevel + 1)
        return "(unknown file)", 0, "(unknown function)", None


def _access_logger() -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    if type(logger) is logging.Logger:
        logger.__class__ = _AccessLogger


def configure_logging(level: str, log_format: LogFormat, *, worker: str | None = None) -> None:
    """Once per process, at start. Like ``logging.basicConfig``, leaves a root
    logger that already has handlers (a test runner's) alone."""
    logging.basicConfig(level=level, handlers=[log_handler(log_format, worker=worker)])
    # Neither format shows the thread or the process, and gathering them for
    # every record (an access line per request) is wasted work: the logging
    # HOWTO's "Optimization" section names these switches. (Its fourth,
    # logging._srcfile, would also drop ``stack_info``: left on.)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    _access_logger()
