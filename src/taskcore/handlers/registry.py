"""Named task handlers and the input type each one declares.

A handler is a plain function, sync or async, with one parameter. Its
annotation is the task's input type: submit converts the client's JSON into it
with msgspec and refuses a mismatch before anything is stored, and the worker
converts the stored JSON back into it before the call.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import msgspec

from taskcore.config import RetryPolicy
from taskcore.errors import HandlerRegistrationError, InvalidInput, UnknownTaskType
from taskcore.model.queues import DEFAULT_QUEUE, check_queue_name

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    fn: Callable[[Any], Any]
    input_type: Any
    is_async: bool
    max_attempts: int
    timeout_s: float | None
    retry: RetryPolicy | None = None
    queue: str = DEFAULT_QUEUE
    # How long its finished tasks are kept, in seconds: None = the setting
    # (TASKCORE_RETENTION_S), 0 = forever (model/retention.py).
    retention_s: float | None = None

    def parse_input(self, data: Any) -> Any:
        """Convert JSON-shaped data into the handler's input type."""
        try:
            return msgspec.convert(data, self.input_type)
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"invalid input for {self.name!r}: {exc}", task_type=self.name) from exc

    def normalise_input(self, data: Any) -> Any:
        """Validate ``data`` and return it as the JSON value to store."""
        return msgspec.to_builtins(self.parse_input(data))

    async def call(self, value: Any) -> Any:
        """Run an async handler. The processor runs sync ones (``fn``) in its thread pool instead."""
        result = self.fn(value)
        if inspect.isawaitable(result):
            return await result
        return result


def _input_type(fn: Callable[..., Any], name: str) -> Any:
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 1 or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise HandlerRegistrationError(
            f"handler {name!r} must take exactly one positional parameter, its input"
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise HandlerRegistrationError(f"cannot resolve annotations of handler {name!r}: {exc}") from exc
    return hints.get(params[0].name, Any)


class HandlerRegistry:
    """The task types a deployment knows. Build one, register handlers on it, and
    pass it to the service and the worker (or name it with ``--app module:attr``)."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._queues: set[str] = {DEFAULT_QUEUE}

    @overload
    def handler(self, fn: F, /) -> F: ...

    @overload
    def handler(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        queue: str = DEFAULT_QUEUE,
        retention_s: float | None = None,
    ) -> Callable[[F], F]: ...

    def handler(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        queue: str = DEFAULT_QUEUE,
        retention_s: float | None = None,
    ) -> F | Callable[[F], F]:
        """Decorator form of ``register``: ``@registry.handler`` or
        ``@registry.handler(name="resize", queue="images", max_attempts=5, retry=RetryPolicy(base_s=2))``."""

        def decorate(f: F) -> F:
            self.register(
                f,
                name=name,
                max_attempts=max_attempts,
                timeout_s=timeout_s,
                retry=retry,
                queue=queue,
                retention_s=retention_s,
            )
            return f

        return decorate(fn) if fn is not None else decorate

    def register(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        queue: str = DEFAULT_QUEUE,
        retention_s: float | None = None,
    ) -> Handler:
        """``queue``: where its tasks wait unless a submit names another
        (``model/queues.py``). ``retention_s``: how long its finished tasks are
        kept, overriding the setting; 0 keeps them forever (an audit trail),
        a short one suits tasks whose results are read at once."""
        task_type = name or getattr(fn, "__name__", "")
        if not task_type:
            raise HandlerRegistrationError("a handler needs a name")
        if task_type in self._handlers:
            raise HandlerRegistrationError(f"a handler named {task_type!r} is already registered")
        if max_attempts < 1:
            raise HandlerRegistrationError("max_attempts must be at least 1")
        if timeout_s is not None and timeout_s <= 0:
            raise HandlerRegistrationError("timeout_s must be positive")
        if retention_s is not None and not retention_s >= 0:
            raise HandlerRegistrationError("retention_s must be 0 (keep forever) or positive")
        try:
            check_queue_name(queue)
        except InvalidInput as exc:
            raise HandlerRegistrationError(f"handler {task_type!r}: {exc}") from exc
        handler = Handler(
            name=task_type,
            fn=fn,
            input_type=_input_type(fn, task_type),
            is_async=inspect.iscoroutinefunction(fn),
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            retry=retry,
            queue=queue,
            retention_s=retention_s,
        )
        self._handlers[task_type] = handler
        return handler

    def get(self, task_type: str) -> Handler:
        try:
            return self._handlers[task_type]
        except KeyError:
            raise UnknownTaskType(f"unknown task type {task_type!r}", task_type=task_type) from None

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def add_queue(self, name: str) -> None:
        """Make a queue known that no handler declares, for submits to name
        (say an ``urgent`` lane with workers of its own)."""
        try:
            self._queues.add(check_queue_name(name))
        except InvalidInput as exc:
            raise HandlerRegistrationError(str(exc)) from exc

    def queues(self) -> list[str]:
        """Every queue a handler declares or ``add_queue`` added, and ``default``
        always: the queues a submit may name and a worker consumes unless told which."""
        return sorted({*self._queues, *(handler.queue for handler in self._handlers.values())})

    def __contains__(self, task_type: object) -> bool:
        return task_type in self._handlers

    def __iter__(self) -> Iterator[Handler]:
        return iter(self._handlers.values())

    def __len__(self) -> int:
        return len(self._handlers)
