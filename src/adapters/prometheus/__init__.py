"""Prometheus metrics: the telemetry port on prometheus-client, the exposition
(multiprocess-aware) and a poller that reads the queue depths."""

from taskcore.adapters.prometheus.depth import QueueDepthPoller
from taskcore.adapters.prometheus.metrics import (
    Metrics,
    PrometheusTelemetry,
    forget_process,
    render,
    shared_metrics_dir,
)

__all__ = [
    "Metrics",
    "PrometheusTelemetry",
    "QueueDepthPoller",
    "forget_process",
    "render",
    "shared_metrics_dir",
]
