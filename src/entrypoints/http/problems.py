"""Every error leaves as RFC 9457 ``application/problem+json``.

Client mistakes get a 4xx that says what was wrong; anything unexpected gets a
bare 500 with no stack trace or internal detail (the log has those).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from taskcore.entrypoints.http.schemas import Problem
from taskcore.errors import (
    InvalidInput,
    InvalidTransition,
    ServiceUnavailable,
    TaskNotFound,
    UnknownTaskType,
    UnstorableValue,
)
from taskcore.model.idempotency import IdempotencyConflict
from taskcore.model.queues import UnknownQueue
from taskcore.model.schedules import ScheduleConflict, ScheduleNotFound, ScheduleReadOnly
from taskcore.model.webhooks import WebhookNotFound
from taskcore.model.workflows import WorkflowNotFound

log = logging.getLogger("taskcore.http")

PROBLEM_JSON = "application/problem+json"


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    detail: str | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    return Response(
        Problem(
            title=HTTPStatus(status).phrase,
            status=status,
            detail=detail,
            instance=request.url.path,
            errors=errors,
        ),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    errors = exc.extra if isinstance(exc.extra, list) else None
    return problem_response(request, 422, "The request does not match the schema.", errors=errors)


# How Litestar reports a client that went away while sending its body: an
# InternalServerException with this detail (no type of its own in Litestar 2).
CLIENT_GONE = "client disconnected prematurely"


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    headers = dict(exc.headers) if exc.headers else None
    status = exc.status_code
    if exc.detail == CLIENT_GONE:
        # The client's doing, not ours: no 500, no traceback (nobody reads the answer).
        log.info("%s %s: the client disconnected while sending its body", request.method, request.url.path)
        return problem_response(request, 400, "The request body was not received in full.")
    if status >= 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    detail = exc.detail if status < 500 else None
    return problem_response(request, status, detail, headers=headers)


def _not_found(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    return problem_response(request, 404, str(exc))


def _unprocessable(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    return problem_response(request, 422, str(exc))


def _conflict(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    return problem_response(request, 409, str(exc))


def _forbidden(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    return problem_response(request, 403, str(exc))


def _unavailable(request: Request[Any, Any, Any], exc: ServiceUnavailable) -> Response[Problem]:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        request, 503, "A backing service is unavailable; try again shortly.", headers={"Retry-After": "5"}
    )


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, 500)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ValidationException: _validation,
    HTTPException: _http,
    TaskNotFound: _not_found,
    UnknownQueue: _not_found,
    WorkflowNotFound: _not_found,
    WebhookNotFound: _not_found,
    ScheduleNotFound: _not_found,
    ScheduleConflict: _conflict,
    ScheduleReadOnly: _forbidden,
    UnknownTaskType: _unprocessable,
    InvalidInput: _unprocessable,
    UnstorableValue: _unprocessable,
    IdempotencyConflict: _unprocessable,
    InvalidTransition: _conflict,
    ServiceUnavailable: _unavailable,
    Exception: _internal,
}
