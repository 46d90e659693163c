"""Named task handlers and the input type each one declares.

A handler is a plain function, sync or async, with one parameter. Its
annotation is the task's input type: submit converts the client's JSON into it
with msgspec and refuses a mismatch before anything is stored, and the worker
converts the stored JSON back into it before the call. A handler may also
say which of its tasks are the same work (``unique=``, a key function over
the input; see ``model/uniqueness.py``).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar, overload

import msgspec

from taskcore.config import RetryPolicy
from taskcore.errors import HandlerRegistrationError, InvalidInput, UnknownTaskType
from taskcore.handlers.context import TaskContext
from taskcore.model.limits import NO_LIMITS, KeyFunction, Rate, TypeLimits, parse_rate
from taskcore.model.queues import DEFAULT_QUEUE, check_queue_name
from taskcore.model.schedules import DEFAULT_CATCH_UP_LIMIT, CatchUp, ScheduleSpec, check_timing
from taskcore.model.task import check_priority
from taskcore.model.uniqueness import check_unique_key

F = TypeVar("F", bound=Callable[..., Any])
UniqueKeyFunction = Callable[[Any], "str | None"]
"""Of a task's parsed input: its unique key, or ``None`` when this one is not unique."""

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
    concurrency: int | None = None  # at most this many running at once, per concurrency key
    concurrency_key: KeyFunction | None = None  # None: one limit for the whole type
    rate: Rate | None = None  # at most this many starts per period, per rate key
    rate_key: KeyFunction | None = None
    context: str | None = None  # the name of its TaskContext parameter, if it declares one

    def limit_keys(self, value: Any) -> tuple[str | None, str | None]:
        """The concurrency and rate keys of a task with the parsed input
        ``value`` (``""``: the whole type; ``None``: not limited that way)."""
        return _key(self.concurrency, self.concurrency_key, value), _key(self.rate, self.rate_key, value)

    unique: UniqueKeyFunction | None = None
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

    def unique_key(self, value: Any) -> str | None:
        """The unique key the handler's ``unique`` function gives the parsed
        input ``value``, if it has one. The function depends on the input, so
        what it raises, or a value that cannot be a key, is the input's
        fault as far as the client can tell: ``InvalidInput``, never a 500."""
        if self.unique is None:
            return None
        try:
            key = self.unique(value)
        except Exception as exc:
            raise InvalidInput(
                f"cannot derive the unique key of this {self.name!r} input: {type(exc).__name__}: {exc}",
                task_type=self.name,
            ) from exc
        if key is None:
            return None
        try:
            return check_unique_key(key)
        except InvalidInput as exc:
            raise InvalidInput(f"{self.name!r}'s unique function: {exc}", task_type=self.name) from exc

    def bind(self, value: Any, context: TaskContext | None = None) -> Callable[[], Any]:
        """The call of the handler with ``value``, and ``context`` if it asks for one."""
        if self.context is None or context is None:
            return partial(self.fn, value)
        return partial(self.fn, value, **{self.context: context})

    async def call(self, value: Any, context: TaskContext | None = None) -> Any:
        """Run an async handler. The processor runs sync ones (``bind``) in its thread pool instead."""
        result = self.bind(value, context)()
        if inspect.isawaitable(result):
            return await result
        return result


MAX_KEY_LENGTH = 200


def _key(limit: object, key: KeyFunction | None, value: Any) -> str | None:
    if limit is None:
        return None
    if key is None:
        return ""
    try:
        found = key(value)
    except Exception as exc:
        raise InvalidInput(
            f"the limit's key function failed on this input: {type(exc).__name__}: {exc}"
        ) from exc
    if found is None:
        return ""
    if not isinstance(found, str) or len(found) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"a limit key must be a string of at most {MAX_KEY_LENGTH} characters, got {found!r}"
        )
    return found


def _parameters(fn: Callable[..., Any], name: str) -> tuple[Any, str | None]:
    """The input type (the first parameter's annotation) and the name of the
    ``TaskContext`` parameter, if any; nothing else may be required."""
    params = list(inspect.signature(fn).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or params[0].kind not in positional:
        raise HandlerRegistrationError(
            f"handler {name!r} must take its input as its first positional parameter"
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise HandlerRegistrationError(f"cannot resolve annotations of handler {name!r}: {exc}") from exc
    context = None
    for param in params[1:]:
        if (
            hints.get(param.name) is TaskContext
            and context is None
            and param.kind is not param.VAR_POSITIONAL
        ):
            context = param.name
        elif param.default is param.empty and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise HandlerRegistrationError(
                f"handler {name!r}: its parameter {param.name!r} is neither its input nor a TaskContext"
            )
    return hints.get(params[0].name, Any), context


class HandlerRegistry:
    """The task types a deployment knows. Build one, register handlers on it, and
    pass it to the service and the worker (or name it with ``--app module:attr``)."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._queues: set[str] = {DEFAULT_QUEUE}
        self._schedules: dict[str, ScheduleSpec] = {}

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
        concurrency: int | None = None,
        concurrency_key: KeyFunction | None = None,
        rate_limit: str | None = None,
        rate_key: KeyFunction | None = None,
        unique: UniqueKeyFunction | None = None,
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
        concurrency: int | None = None,
        concurrency_key: KeyFunction | None = None,
        rate_limit: str | None = None,
        rate_key: KeyFunction | None = None,
        unique: UniqueKeyFunction | None = None,
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
                concurrency=concurrency,
                concurrency_key=concurrency_key,
                rate_limit=rate_limit,
                rate_key=rate_key,
                unique=unique,
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
        concurrency: int | None = None,
        concurrency_key: KeyFunction | None = None,
        rate_limit: str | None = None,
        rate_key: KeyFunction | None = None,
        unique: UniqueKeyFunction | None = None,
        retention_s: float | None = None,
    ) -> Handler:
        """``queue``: where its tasks wait unless a submit names another
        (``model/queues.py``). ``concurrency``: at most this many of its tasks
        run at once across all workers; ``rate_limit`` (``"100/m"``, ``"20/s"``,
        ``"5/h"``): at most that many start per period. Each applies per key
        when ``concurrency_key`` / ``rate_key`` (a function of the parsed
        input, say the customer) is given (``model/limits.py``). ``unique``: a
        function of the parsed input giving the task's unique key, or ``None``
        for a task that is not unique; a submit's own ``unique_key`` takes its
        place (``model/uniqueness.py``). ``retention_s``: how long its finished
        tasks are kept, overriding the setting; 0 keeps them forever (an audit
        trail), a short one suits tasks whose results are read at once."""
        task_type = name or getattr(fn, "__name__", "")
        if not task_type:
            raise HandlerRegistrationError("a handler needs a name")
        if task_type in self._handlers:
            raise HandlerRegistrationError(f"a handler named {task_type!r} is already registered")
        if max_attempts < 1:
            raise HandlerRegistrationError("max_attempts must be at least 1")
        if timeout_s is not None and timeout_s <= 0:
            raise HandlerRegistrationError("timeout_s must be positive")
        if unique is not None and not callable(unique):
            raise HandlerRegistrationError(f"handler {task_type!r}: unique must be a function of the input")
        if retention_s is not None and not retention_s >= 0:
            raise HandlerRegistrationError("retention_s must be 0 (keep forever) or positive")
        try:
            check_queue_name(queue)
            rate = parse_rate(rate_limit) if rate_limit is not None else None
        except InvalidInput as exc:
            raise HandlerRegistrationError(f"handler {task_type!r}: {exc}") from exc
        if concurrency is not None and (type(concurrency) is not int or concurrency < 1):
            raise HandlerRegistrationError(f"handler {task_type!r}: concurrency must be an int of at least 1")
        if concurrency_key is not None and concurrency is None:
            raise HandlerRegistrationError(f"handler {task_type!r}: concurrency_key needs concurrency")
        if rate_key is not None and rate is None:
            raise HandlerRegistrationError(f"handler {task_type!r}: rate_key needs rate_limit")
        input_type, context = _parameters(fn, task_type)
        handler = Handler(
            name=task_type,
            fn=fn,
            input_type=input_type,
            context=context,
            is_async=inspect.iscoroutinefunction(fn),
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            retry=retry,
            queue=queue,
            concurrency=concurrency,
            concurrency_key=concurrency_key,
            rate=rate,
            rate_key=rate_key,
            unique=unique,
            retention_s=retention_s,
        )
        self._handlers[task_type] = handler
        return handler

    def periodic(
        self,
        cron: str | None = None,
        /,
        *,
        every: timedelta | int | None = None,
        name: str | None = None,
        timezone: str = "UTC",
        input: Any = None,
        queue: str | None = None,
        priority: int | None = None,
        catch_up: str = "skip",
        catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT,
    ) -> Callable[[F], F]:
        """Run a handler on a schedule: ``@registry.periodic("*/5 * * * *",
        timezone="Europe/Berlin", input={...})`` (a cron expression, five
        fields or six with seconds first) or ``@registry.periodic(every=timedelta(seconds=30))``.
        Put it above ``@registry.handler(...)``; alone, it registers the
        function as a handler with the defaults. The schedule (named
        ``name``, by default the handler's) is a system schedule: each worker
        stores it as it starts, and retires the ones the code no longer
        declares (``model/schedules.py``). ``catch_up``: ``skip``,
        ``latest`` or ``all`` (up to ``catch_up_limit``) missed firings."""

        def decorate(fn: F) -> F:
            handler = next((h for h in self._handlers.values() if h.fn is fn), None) or self.register(fn)
            seconds = every.total_seconds() if isinstance(every, timedelta) else every
            if seconds is not None and seconds != int(seconds):
                raise HandlerRegistrationError(f"schedule of {handler.name!r}: every is whole seconds")
            try:
                mode = CatchUp(catch_up)
            except ValueError:
                raise HandlerRegistrationError(
                    f"schedule of {handler.name!r}: catch_up is skip, latest or all, not {catch_up!r}"
                ) from None
            self.add_schedule(
                ScheduleSpec(
                    name=name or handler.name,
                    type=handler.name,
                    input=input,
                    cron=cron,
                    timezone=timezone,
                    every_s=None if seconds is None else int(seconds),
                    queue=queue,
                    priority=priority,
                    catch_up=mode,
                    catch_up_limit=catch_up_limit,
                    system=True,
                )
            )
            return fn

        return decorate

    def add_schedule(self, spec: ScheduleSpec) -> ScheduleSpec:
        """Declare a schedule of a registered handler (``periodic`` without the decorator)."""
        try:
            check_timing(spec)
            if spec.priority is not None:
                check_priority(spec.priority)
            if spec.queue is not None and spec.queue not in self.queues():
                raise InvalidInput(f"unknown queue {spec.queue!r} (add_queue makes one known)")
            self.get(spec.type).parse_input(spec.input)
        except (InvalidInput, UnknownTaskType) as exc:
            raise HandlerRegistrationError(f"schedule {spec.name!r}: {exc}") from exc
        if spec.name in self._schedules:
            raise HandlerRegistrationError(f"a schedule named {spec.name!r} is already declared")
        self._schedules[spec.name] = spec
        return spec

    def schedules(self) -> list[ScheduleSpec]:
        """The schedules the code declares, by name."""
        return [self._schedules[name] for name in sorted(self._schedules)]

    def get(self, task_type: str) -> Handler:
        try:
            return self._handlers[task_type]
        except KeyError:
            raise UnknownTaskType(f"unknown task type {task_type!r}", task_type=task_type) from None

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def limits_of(self, task_type: str) -> TypeLimits:
        """``task_type``'s concurrency and rate limits, as the claim applies them
        (none for a type this registry does not know)."""
        handler = self._handlers.get(task_type)
        if handler is None:
            return NO_LIMITS
        return TypeLimits(concurrency=handler.concurrency, rate=handler.rate)

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
