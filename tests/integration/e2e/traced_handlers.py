"""Handlers for the tracing test (``test_tracing.py``), loaded by real processes
with ``--app tests.integration.e2e.traced_handlers:registry``."""

from __future__ import annotations

import msgspec
from opentelemetry import trace

from taskcore import HandlerRegistry, RetryPolicy, TaskContext, register_builtins

registry = HandlerRegistry()
register_builtins(registry, reverse_delay_s=0)


class Job(msgspec.Struct):
    failures: int


@registry.handler(max_attempts=3, retry=RetryPolicy(base_s=0.2, cap_s=0.5))
def traced(job: Job, context: TaskContext) -> dict[str, str]:
    """Fails its first ``failures`` attempts; then answers with the span it
    runs in (a sync handler: in the worker's thread pool)."""
    if context.attempt <= job.failures:
        raise RuntimeError(f"planned failure of attempt {context.attempt}")
    span = trace.get_current_span().get_span_context()
    return {"trace_id": trace.format_trace_id(span.trace_id), "span_id": trace.format_span_id(span.span_id)}
