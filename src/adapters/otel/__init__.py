"""OpenTelemetry tracing: the ``taskcore[otel]`` extra.

``OtelTracing`` (``tracing.py``) implements the core's tracing ports
(``taskcore.ports.tracing``) with the OpenTelemetry API: a PRODUCER span per
submit, whose W3C trace context is stored with the task, and CONSUMER spans
per claim and per attempt in that trace. ``export.py`` sets up the SDK for a
process that should print its spans (``TASKCORE_OTEL_EXPORTER=console``).

Importing this package imports no OpenTelemetry: ``installed`` looks for it,
and ``otel_tracing`` and ``export_spans`` import it when called, so a process
with tracing off, or without the extra, never loads it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from taskcore.adapters.otel.tracing import OtelTracing

Exporter = Literal["console"]


def installed(*, sdk: bool = False) -> bool:
    """Whether the OpenTelemetry API (and with ``sdk``, the SDK) can be imported."""
    names = ["opentelemetry.trace", "opentelemetry.propagate"]
    if sdk:
        names.append("opentelemetry.sdk.trace")
    try:
        return all(importlib.util.find_spec(name) is not None for name in names)
    except (ModuleNotFoundError, ValueError):  # a parent package is missing, or unloadable
        return False


def otel_tracing(tracer_provider: TracerProvider | None = None) -> OtelTracing:
    """Tracing through ``tracer_provider``, by default the global one (whatever
    the program, ``opentelemetry-instrument`` or ``export_spans`` set up)."""
    from taskcore.adapters.otel.tracing import OtelTracing

    return OtelTracing(tracer_provider)


def export_spans(exporter: Exporter) -> Callable[[], None]:
    """Make this process export its spans (needs the SDK); returns what flushes
    and stops the export at exit."""
    from taskcore.adapters.otel.export import export_spans as export

    return export(exporter)


__all__ = ["Exporter", "export_spans", "installed", "otel_tracing"]
