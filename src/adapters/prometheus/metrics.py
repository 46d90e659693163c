"""The telemetry port as Prometheus metrics, and their exposition.

Metric objects are process-wide (prometheus-client registers them in a
registry by name), so they are made once per registry and shared by every
``PrometheusTelemetry`` built on it: a process that builds several containers
(the test suites) counts into the same families instead of failing on a
duplicate name. A test wanting numbers of its own passes a fresh
``CollectorRegistry``.

With ``PROMETHEUS_MULTIPROC_DIR`` set (the API served by several processes),
prometheus-client keeps each process's values in files in that directory, and
``render`` merges them: counters and histograms add up, ``in_flight`` adds the
live processes' values, the queue depths show the latest reading.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.ports.telemetry import DeadLetterReason, Recovery, Verdict, WebhookAttempt

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
RUN_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class Metrics:
    """Every task metric, registered in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        by_type = ["type", "queue"]  # a queue name comes from the registry: bounded like the types
        self.submitted = Counter(
            "taskcore_tasks_submitted_total", "Tasks stored by a submit.", by_type, registry=registry
        )
        self.deduplicated = Counter(
            "taskcore_tasks_deduplicated_total",
            "Submits answered with an unfinished task that had their unique key.",
            by_type,
            registry=registry,
        )
        self.completed = Counter(
            "taskcore_tasks_completed_total",
            "Attempts whose verdict was COMPLETED.",
            by_type,
            registry=registry,
        )
        self.retried = Counter(
            "taskcore_tasks_retried_total",
            "Failed attempts scheduled to run again.",
            by_type,
            registry=registry,
        )
        self.failed = Counter(
            "taskcore_tasks_failed_total",
            "Tasks that ended FAILED (attempts spent or a final error).",
            by_type,
            registry=registry,
        )
        self.dead_lettered = Counter(
            "taskcore_messages_dead_lettered_total",
            "Messages naming no task, moved to the dead-letter queue.",
            ["reason"],
            registry=registry,
        )
        self.queue_wait = Histogram(
            "taskcore_task_queue_wait_seconds",
            "From when an attempt was due (created or run_at) to its claim by a worker.",
            by_type,
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.run_time = Histogram(
            "taskcore_task_run_seconds",
            "How long a handler ran, whatever its result.",
            by_type,
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "taskcore_tasks_in_flight",
            "Tasks this worker runs now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.recovered = Counter(
            "taskcore_sweeper_recoveries_total",
            "Tasks the sweeper released (lease lapsed), failed (attempts spent) or published again.",
            ["action"],
            registry=registry,
        )
        self.pruned = Counter(
            "taskcore_tasks_pruned_total",
            "Finished tasks the sweeper deleted, past their retention.",
            registry=registry,
        )
        self.cache_hits = Counter(
            "taskcore_cache_hits_total", "Status reads answered by the cache.", registry=registry
        )
        self.cache_misses = Counter(
            "taskcore_cache_misses_total", "Status reads the cache did not hold.", registry=registry
        )
        self.cache_errors = Counter(
            "taskcore_cache_errors_total",
            "Cache calls that failed or timed out (the database answered instead).",
            ["operation"],
            registry=registry,
        )
        self.webhook_attempts = Counter(
            "taskcore_webhook_attempts_total",
            "Webhook delivery attempts: delivered (a 2xx), retried (failed, to try again)"
            " or failed (given up).",
            ["outcome"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "taskcore_queue_depth_messages",
            "Messages ready on a queue's work queue (delayed ones not counted), read every few seconds.",
            ["queue"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.dead_letter_depth = Gauge(
            "taskcore_dead_letter_depth_messages",
            "Messages in a queue's dead-letter queue, read every few seconds.",
            ["queue"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )

    _made: dict[int, tuple[CollectorRegistry, Metrics]] = {}

    @classmethod
    def of(cls, registry: CollectorRegistry) -> Metrics:
        made = cls._made.get(id(registry))
        if made is None or made[0] is not registry:
            made = cls._made[id(registry)] = (registry, cls(registry))
        return made[1]


class PrometheusTelemetry:
    """Implements every telemetry port of ``taskcore.ports.telemetry``, plus the queue depths the
    poller reads."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.metrics = Metrics.of(registry or REGISTRY)
        self._settled = {
            "completed": self.metrics.completed,
            "retried": self.metrics.retried,
            "failed": self.metrics.failed,
        }
        # The child series of the per-task metrics, kept: prometheus_client's
        # ``labels()`` takes a lock and builds its key on every call, and these
        # are called for every task. Bounded: types and queues come from the registry.
        self._children: dict[tuple[str, str, str], Any] = {}

    def _child(self, name: str, metric: Any, task_type: str, queue: str) -> Any:
        key = (name, task_type, queue)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(task_type, queue)
        return child

    def task_submitted(self, task_type: str, *, queue: str = DEFAULT_QUEUE) -> None:
        self._child("submitted", self.metrics.submitted, task_type, queue).inc()

    def task_deduplicated(self, task_type: str, *, queue: str = DEFAULT_QUEUE) -> None:
        self._child("deduplicated", self.metrics.deduplicated, task_type, queue).inc()

    def task_claimed(self, task_type: str, waited_s: float, *, queue: str = DEFAULT_QUEUE) -> None:
        self._child("queue_wait", self.metrics.queue_wait, task_type, queue).observe(waited_s)

    def task_ran(self, task_type: str, seconds: float, *, queue: str = DEFAULT_QUEUE) -> None:
        self._child("run_time", self.metrics.run_time, task_type, queue).observe(seconds)

    def task_settled(self, task_type: str, verdict: Verdict, *, queue: str = DEFAULT_QUEUE) -> None:
        self._child(verdict, self._settled[verdict], task_type, queue).inc()

    def message_dead_lettered(self, reason: DeadLetterReason) -> None:
        self.metrics.dead_lettered.labels(reason).inc()

    def tasks_in_flight(self, count: int) -> None:
        self.metrics.in_flight.set(count)

    def tasks_recovered(self, action: Recovery, count: int) -> None:
        self.metrics.recovered.labels(action).inc(count)

    def tasks_pruned(self, count: int) -> None:
        self.metrics.pruned.inc(count)

    def cache_read(self, result: Literal["hit", "miss", "error"]) -> None:
        if result == "hit":
            self.metrics.cache_hits.inc()
        elif result == "miss":
            self.metrics.cache_misses.inc()
        else:
            self.metrics.cache_errors.labels("read").inc()

    def cache_write_failed(self) -> None:
        self.metrics.cache_errors.labels("write").inc()

    def webhook_attempted(self, outcome: WebhookAttempt) -> None:
        self.metrics.webhook_attempts.labels(outcome).inc()

    def queue_depths(self, queue: str, ready: int | None, dead_letters: int | None) -> None:
        """The latest reading of ``queue``; ``None`` (unknown: the broker did not answer) shows as NaN."""
        self.metrics.queue_depth.labels(queue).set(math.nan if ready is None else ready)
        self.metrics.dead_letter_depth.labels(queue).set(math.nan if dead_letters is None else dead_letters)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR_VARIABLE)


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """A ``PROMETHEUS_MULTIPROC_DIR`` for the processes started inside the block
    (set in the environment they inherit), so that each one's ``/metrics``
    shows every process's values. One the operator set is used and its stale
    files from an earlier run removed, as prometheus_client asks; otherwise a
    temporary one is made and deleted afterwards."""
    given = multiprocess_dir()
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        yield given
        return
    made = tempfile.mkdtemp(prefix="taskcore-metrics-")
    os.environ[MULTIPROC_DIR_VARIABLE] = made
    try:
        yield made
    finally:
        os.environ.pop(MULTIPROC_DIR_VARIABLE, None)
        shutil.rmtree(made, ignore_errors=True)


def forget_process(pid: int) -> None:
    """A process that died: its live gauges (requests in progress) stop counting."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def render(accept: str | None = None, registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The exposition body and its content type, in the format ``accept`` asks
    for (OpenMetrics or the Prometheus text format); every process's values
    merged in multiprocess mode."""
    if registry is None:
        registry = REGISTRY
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
