"""Bulk submit: many tasks in one request, stored together or not at all.

A batch is validated whole before anything is stored (the first bad task is
named by its position), stored in one transaction, and its wake-ups and cache
writes go out together: one INSERT, one burst of publisher-confirmed
publishes and one cache pipeline instead of a round trip of each per task.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec

MAX_BATCH = 1000


class TaskRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One task of a batch, as ``TaskService.submit`` takes one."""

    type: str
    input: Any
    delay: timedelta | None = None
    priority: int = 0
    queue: str | None = None
    unique_key: str | None = None
    after: tuple[int, ...] = ()
    run_anyway: bool = False
    callback_url: str | None = None
    tags: tuple[str, ...] = ()  # model/tags.py
    metadata: dict[str, Any] | None = None
