"""Exporting a process's spans with the OpenTelemetry SDK, for looking at them
without a collector (``TASKCORE_OTEL_EXPORTER=console``).

Production setups configure the SDK themselves (``opentelemetry-instrument``
with the ``OTEL_*`` variables, or the handler module named by ``--app``) and
leave the exporter at ``none``: taskcore then traces through whatever global
tracer provider they installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from taskcore.adapters.otel import Exporter

SERVICE_NAME = "taskcore"


class JsonLinesExporter(SpanExporter):
    """Each span as one JSON object on one line (the SDK's ``ReadableSpan.to_json``),
    written with one ``write`` call to a file descriptor (standard output by
    default), so lines from the export thread never interleave with another
    writer's (the logs, another process appending to the same file)."""

    def __init__(self, fd: int = 1) -> None:
        self._fd = fd

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            for span in spans:
                _write_all(self._fd, (span.to_json(indent=None) + "\n").encode())
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def export_spans(exporter: Exporter, *, fd: int = 1) -> Callable[[], None]:
    """Add a batching processor with ``exporter`` to the global SDK tracer
    provider, installing one (``service.name`` taskcore unless
    ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` say otherwise) if
    the program has not; what flushes and stops it."""
    if exporter != "console":  # the settings allow no other value
        raise ValueError(f"unknown span exporter {exporter!r}")
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        resource = Resource.create({"service.name": SERVICE_NAME}).merge(OTELResourceDetector().detect())
        provider = TracerProvider(resource=resource)
        trace.set_tracer_provider(provider)
    processor = BatchSpanProcessor(JsonLinesExporter(fd))
    provider.add_span_processor(processor)
    return processor.shutdown
