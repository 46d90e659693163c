"""The core's tracing ports on the OpenTelemetry API.

Spans (attributes from OpenTelemetry's messaging conventions where they fit,
``messaging.system`` = ``taskcore``):

- ``taskcore.submit`` (PRODUCER) around a submit, a batch or a workflow, a
  child of the current context (an HTTP request's ``traceparent``, see
  ``continued``). Its context is injected with the global propagator (W3C
  TraceContext by default) into a carrier, stored as JSON with each task.
- ``taskcore.claim`` and ``taskcore.run`` (CONSUMER) for each attempt: the
  stored context is their parent, so the attempt joins the submit's trace,
  and also a link (the messaging conventions' link to the creation
  context, which tools that follow messages use). The run span is current
  while the handler runs, with the baggage the submit carried (the default
  propagator carries W3C baggage too).

Failures set the span's status to ERROR, with ``error.type`` and the
exception recorded as an event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import Token
from importlib import metadata
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from taskcore.model.status import TaskStatus
from taskcore.model.task import Task

TRACER = "taskcore"
SYSTEM = "taskcore"
SUBMIT, CLAIM, RUN = "taskcore.submit", "taskcore.claim", "taskcore.run"

Attributes = dict[str, str | int | bool]


def encode_carrier(carrier: Mapping[str, str]) -> str | None:
    """The propagator's fields as the text stored with a task (``None``: nothing to carry)."""
    return json.dumps(dict(carrier), separators=(",", ":"), sort_keys=True) if carrier else None


def decode_carrier(text: str | None) -> dict[str, str]:
    """The stored text back into fields; anything unreadable carries nothing."""
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {str(key): value for key, value in found.items() if isinstance(value, str)}


def error_type(exception: BaseException) -> str:
    """``error.type``: the exception's class, fully qualified unless a builtin."""
    kind = type(exception)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _task_attributes(task: Task) -> Attributes:
    attributes: Attributes = {
        "messaging.system": SYSTEM,
        "messaging.destination.name": task.queue,
        "messaging.message.id": str(task.id),
        "taskcore.task.type": task.type,
    }
    if task.workflow_id is not None:
        attributes["taskcore.workflow.id"] = task.workflow_id
    return attributes


def _fail(span: trace.Span, description: str, exception: BaseException | None) -> None:
    span.set_status(Status(StatusCode.ERROR, description))
    span.set_attribute("error.type", error_type(exception) if exception is not None else "taskcore.failed")
    if exception is not None:
        span.record_exception(exception)


class _Current:
    """A span made current for the length of a ``with`` (in this task's
    ``contextvars``, which tasks and threads started inside copy), failed if
    an exception leaves it, ended at its exit."""

    _span: trace.Span
    _token: Token[otel_context.Context]

    def _activate(self, span: trace.Span, within: otel_context.Context | None = None) -> None:
        """``within``: the context to make current with the span (by default the current one)."""
        self._span = span
        self._token = otel_context.attach(trace.set_span_in_context(span, within))

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if isinstance(error, Exception):
                _fail(self._span, f"{type(error).__name__}: {error}", error)
            elif error is not None:  # a cancellation: the work was handed back, not failed
                self._span.set_attribute("taskcore.interrupted", True)
        finally:
            otel_context.detach(self._token)
            self._span.end()


class _SubmitSpan(_Current):
    def __init__(self, tracer: trace.Tracer, task_type: str | None, count: int) -> None:
        self._tracer = tracer
        self._task_type = task_type
        self._count = count
        self._first: Task | None = None
        self._stored = 0
        self._deduplicated = 0
        self.trace_context: str | None = None

    def __enter__(self) -> _SubmitSpan:
        attributes: Attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "submit",
        }
        if self._task_type is not None:
            attributes["taskcore.task.type"] = self._task_type
        if self._count > 1:
            attributes["messaging.batch.message_count"] = self._count
        span = self._tracer.start_span(SUBMIT, kind=SpanKind.PRODUCER, attributes=attributes)
        self._activate(span)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        self.trace_context = encode_carrier(carrier)
        return self

    def stored(self, task: Task, *, created: bool) -> None:
        self._first = self._first or task
        self._stored += 1
        self._deduplicated += not created
        if self._count == 1:
            self._span.set_attributes(_task_attributes(task))
            if not created:  # the task is an older one, with the trace of its own submit
                self._span.set_attribute("taskcore.deduplicated", True)
        elif self._deduplicated:
            self._span.set_attribute("taskcore.deduplicated_count", self._deduplicated)


class _ClaimSpan:
    """Knows its task only once the claim returns: the span is made then, in
    the task's trace, starting when the claim started."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._task: Task | None = None
        self._started = 0

    def __enter__(self) -> _ClaimSpan:
        self._started = time.time_ns()
        return self

    def claimed(self, task: Task) -> None:
        self._task = task

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        task = self._task
        if task is None:
            return
        parent, links = _in_trace_of(task)
        attributes = _task_attributes(task) | {
            "messaging.operation.type": "receive",
            "messaging.operation.name": "claim",
            "taskcore.attempt": task.attempts,
        }
        if task.status is TaskStatus.PENDING:  # its rate limit deferred it: no attempt started
            attributes["taskcore.deferred"] = True
        span = self._tracer.start_span(
            CLAIM,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            start_time=self._started,
        )
        if isinstance(error, Exception):
            _fail(span, f"{type(error).__name__}: {error}", error)
        span.end()


class _RunSpan(_Current):
    def __init__(self, tracer: trace.Tracer, task: Task) -> None:
        self._tracer = tracer
        self._task = task

    def __enter__(self) -> _RunSpan:
        parent, links = _in_trace_of(self._task)
        attributes = _task_attributes(self._task) | {
            "messaging.operation.type": "process",
            "messaging.operation.name": "run",
            "taskcore.attempt": self._task.attempts,
        }
        if self._task.step is not None:
            attributes["taskcore.step"] = self._task.step
        span = self._tracer.start_span(
            RUN, context=parent, kind=SpanKind.CONSUMER, attributes=attributes, links=links
        )
        self._activate(span, parent)  # the submit's baggage too, if the propagator carried it
        return self

    def failed(self, error: str, exception: BaseException | None = None) -> None:
        _fail(self._span, error, exception)

    def settled(self, outcome: str) -> None:
        self._span.set_attribute("taskcore.outcome", outcome)


def _version() -> str | None:
    try:
        return metadata.version("taskcore")
    except metadata.PackageNotFoundError:
        return None


def _in_trace_of(task: Task) -> tuple[otel_context.Context, list[Link] | None]:
    """The context to start a task's consumer span in (its submit's, from a
    fresh context: never whatever happens to be current in the worker), and
    the link to its submit span."""
    parent = propagate.extract(decode_carrier(task.trace_context), context=otel_context.Context())
    submit = trace.get_current_span(parent).get_span_context()
    if not submit.is_valid:
        return parent, None
    return parent, [Link(submit, {"taskcore.link": "submit"})]


class OtelTracing:
    """``SubmitTracing`` and ``WorkTracing`` through one OpenTelemetry tracer."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(TRACER, _version(), tracer_provider=tracer_provider)

    def submitting(self, task_type: str | None, *, count: int = 1) -> _SubmitSpan:
        return _SubmitSpan(self._tracer, task_type, count)

    def claiming(self) -> _ClaimSpan:
        return _ClaimSpan(self._tracer)

    def running(self, task: Task) -> _RunSpan:
        return _RunSpan(self._tracer, task)

    @contextmanager
    def continued(self, carrier: Mapping[str, str]) -> Iterator[None]:
        """Within it, the trace that ``carrier`` (a request's headers, names in
        lower case) carries is the current context, so a submit's span is a
        child of the caller's. A span already current (an ASGI
        instrumentation's server span) is kept: it continued that trace itself."""
        if trace.get_current_span().get_span_context().is_valid:
            yield
            return
        incoming = propagate.extract(carrier)
        if not trace.get_current_span(incoming).get_span_context().is_valid:
            yield
            return
        token = otel_context.attach(incoming)
        try:
            yield
        finally:
            otel_context.detach(token)


__all__ = ["OtelTracing", "decode_carrier", "encode_carrier", "error_type"]
