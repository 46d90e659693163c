"""The memory adapters' shared state: the tables, as dicts a test can read.

``MemoryDatabase`` is what the PostgreSQL database is to its adapters: one
state behind the per-port views (``MemoryTasks``, ``MemoryRecovery``,
``MemoryPruner``, ``MemoryDashboard``, ``MemoryWorkers``). ``available =
False`` makes every view fail like an unreachable database.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, NamedTuple

from taskcore.errors import RepositoryUnavailable, UnstorableValue
from taskcore.model.schedules import Schedule
from taskcore.model.task import Task
from taskcore.model.webhooks import WebhookDelivery, WebhookEndpoint
from taskcore.model.workers import WorkerReport


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class UsedKey(NamedTuple):
    """A row of ``idempotency_keys``."""

    request_hash: str
    task_id: int
    used_at: datetime
    deduplicated: bool = False  # its first use took an unfinished task that had the unique key


class MemoryDatabase:
    def __init__(self) -> None:
        self.tasks: dict[int, Task] = {}
        self.dispatched_at: dict[int, datetime] = {}
        self.idempotency_keys: dict[tuple[str, str], UsedKey] = {}  # (owner or "", key) -> its use
        # The partial unique index: (type, owner or "", unique key) -> the last task to take it,
        # which holds it while unfinished (only a free key is taken, so no other can).
        self.unique_keys: dict[tuple[str, str, str], int] = {}
        self.workers: dict[str, WorkerReport] = {}
        self.census_deficit_since: datetime | None = None  # the wake-up census's one row
        self.paused_queues: dict[str, datetime] = {}  # queue -> paused at
        # Concurrency and rate limits (model/limits.py): tasks parked by their
        # concurrency limit, the start reserved for a deferred task, and each
        # rate scope's next free start.
        self.throttled: set[int] = set()
        self.rate_slots: dict[int, datetime] = {}
        self.rate_next: dict[str, datetime] = {}
        self.workflows: dict[int, tuple[str | None, str | None, datetime]] = {}  # id -> name, owner, created
        self.commit_listeners: list[asyncio.Queue[list[int]]] = []  # transactional enqueue's notices
        self.webhook_endpoints: dict[int, WebhookEndpoint] = {}
        self.webhook_deliveries: dict[int, WebhookDelivery] = {}
        self._next_endpoint_id = 1
        self.schedules: dict[str, Schedule] = {}
        self.schedule_firings: dict[tuple[str, datetime], int] = {}  # (schedule, fire time) -> its task
        self.available = True
        self._next_id = 1

    async def open(self) -> None:
        """Nothing to connect; present so every adapter has the same lifecycle."""

    async def close(self) -> None:
        """Nothing to release."""

    async def ping(self) -> None:
        self.check()

    def check(self) -> None:
        if not self.available:
            raise RepositoryUnavailable("memory database switched off")

    @staticmethod
    def storable(*values: Any) -> None:
        """Refuse what PostgreSQL would refuse, so dev mode and tests fail alike."""
        if any(_has_nul(value) for value in values):
            raise UnstorableValue("a NUL character cannot be stored")

    def next_id(self) -> int:
        task_id, self._next_id = self._next_id, self._next_id + 1
        return task_id

    def next_endpoint_id(self) -> int:
        endpoint_id, self._next_endpoint_id = self._next_endpoint_id, self._next_endpoint_id + 1
        return endpoint_id

    def next_workflow_id(self) -> int:
        return len(self.workflows) + 1
