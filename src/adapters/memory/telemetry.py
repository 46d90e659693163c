"""Telemetry kept in plain dicts, for tests to read."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.ports.telemetry import DeadLetterReason, Recovery, Verdict, WebhookAttempt


class MemoryTelemetry:
    def __init__(self) -> None:
        self.submitted: Counter[str] = Counter()
        self.submitted_to: Counter[str] = Counter()  # by queue
        self.deduplicated: Counter[str] = Counter()
        self.claimed: Counter[str] = Counter()
        self.waits: list[tuple[str, float]] = []
        self.runs: list[tuple[str, float]] = []
        self.settled: Counter[tuple[str, Verdict]] = Counter()
        self.dead_lettered: Counter[DeadLetterReason] = Counter()
        self.in_flight = 0
        self.in_flight_peak = 0
        self.recovered: Counter[Recovery] = Counter()
        self.pruned = 0
        self.cache_reads: Counter[str] = Counter()
        self.cache_write_failures = 0
        self.webhook_attempts: Counter[WebhookAttempt] = Counter()

    def task_submitted(self, task_type: str, *, queue: str = DEFAULT_QUEUE) -> None:
        self.submitted[task_type] += 1
        self.submitted_to[queue] += 1

    def task_deduplicated(self, task_type: str, *, queue: str = DEFAULT_QUEUE) -> None:
        self.deduplicated[task_type] += 1

    def task_claimed(self, task_type: str, waited_s: float, *, queue: str = DEFAULT_QUEUE) -> None:
        self.claimed[task_type] += 1
        self.waits.append((task_type, waited_s))

    def task_ran(self, task_type: str, seconds: float, *, queue: str = DEFAULT_QUEUE) -> None:
        self.runs.append((task_type, seconds))

    def task_settled(self, task_type: str, verdict: Verdict, *, queue: str = DEFAULT_QUEUE) -> None:
        self.settled[task_type, verdict] += 1

    def message_dead_lettered(self, reason: DeadLetterReason) -> None:
        self.dead_lettered[reason] += 1

    def tasks_in_flight(self, count: int) -> None:
        self.in_flight = count
        self.in_flight_peak = max(self.in_flight_peak, count)

    def tasks_recovered(self, action: Recovery, count: int) -> None:
        self.recovered[action] += count

    def tasks_pruned(self, count: int) -> None:
        self.pruned += count

    def cache_read(self, result: Literal["hit", "miss", "error"]) -> None:
        self.cache_reads[result] += 1

    def cache_write_failed(self) -> None:
        self.cache_write_failures += 1

    def webhook_attempted(self, outcome: WebhookAttempt) -> None:
        self.webhook_attempts[outcome] += 1
