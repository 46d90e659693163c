"""What the client raises: one hierarchy, so ``except TaskcoreClientError`` catches every failure.

A refused request raises a ``ProblemError`` (by status: ``NotFound``,
``Conflict``, ...) carrying the RFC 9457 fields the API answered with; an API
that could not be reached, or whose answer was lost, raises
``TransportError`` once the retries are spent; an answer this client cannot
read (a server of another version, a proxy's page) raises
``UnexpectedResponse``. As elsewhere in taskcore, a class's docstring is its
default message.
"""

from __future__ import annotations

from typing import Any


class TaskcoreClientError(Exception):
    """The taskcore API could not be used."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class TransportError(TaskcoreClientError):
    """The API could not be reached, or its answer was lost, and retrying did not help.

    ``__cause__`` is the last ``httpx.TransportError``. Raised for a request
    that is not safe to send again as soon as its answer is lost (see the
    README): it may have been acted on.
    """

    def __init__(self, message: str | None = None, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class UnexpectedResponse(TaskcoreClientError):
    """The API answered with something this client cannot read."""

    def __init__(self, message: str | None = None, *, status: int, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class ProblemError(TaskcoreClientError):
    """The API refused the request.

    The fields are the problem details' (RFC 9457), plus what helps to act on
    it: ``request_id`` (the ``X-Request-ID`` the API logged it under),
    ``retry_after`` (seconds, when the API said when to come back),
    ``attempts`` (how many times the client sent the request) and
    ``resent_after_lost_answer`` (an earlier attempt's answer was lost, so it
    may have been acted on: a 409 or a 404 may be that attempt's doing).
    """

    def __init__(
        self,
        *,
        status: int,
        title: str,
        type: str = "about:blank",
        detail: str | None = None,
        instance: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.title = title
        self.type = type
        self.detail = detail
        self.instance = instance
        self.errors = errors
        self.request_id = request_id
        self.retry_after = retry_after
        self.attempts = attempts
        self.resent_after_lost_answer = False
        message = f"{status} {title}" + (f": {detail}" if detail else "")
        where = ", ".join(part for part in (instance, request_id and f"request {request_id}") if part)
        super().__init__(f"{message} ({where})" if where else message)


class BadRequest(ProblemError):
    """400: the request was malformed."""


class Unauthorized(ProblemError):
    """401: no bearer token, or one the API does not accept (malformed, wrongly signed, expired)."""


class Forbidden(ProblemError):
    """403: the token lacks the scope the route needs."""


class NotFound(ProblemError):
    """404: no such task, workflow, queue, schedule or webhook (or another owner's: they look the same)."""


class Conflict(ProblemError):
    """409: not allowed in the current state (cancelling a finished task, a taken name, ...)."""


class PayloadTooLarge(ProblemError):
    """413: the body is over the API's limit."""


class Unprocessable(ProblemError):
    """422: the request is well-formed but invalid; ``detail`` and ``errors`` say what."""


class RateLimited(ProblemError):
    """429: too many submits; ``retry_after`` says when to come back."""


class ServerError(ProblemError):
    """5xx: the API failed."""


class Unavailable(ServerError):
    """503: a service behind the API is down; nothing was done; ``retry_after`` says when to come back."""


BY_STATUS: dict[int, type[ProblemError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: RateLimited,
    503: Unavailable,
}


def problem_class(status: int) -> type[ProblemError]:
    return BY_STATUS.get(status) or (ServerError if status >= 500 else ProblemError)
