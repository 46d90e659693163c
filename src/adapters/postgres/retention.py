"""Retention on PostgreSQL: one DELETE per batch (``prune_tasks`` in queries.sql)."""

from __future__ import annotations

from typing import Any

from taskcore.adapters.postgres.database import PostgresDatabase
from taskcore.model.retention import PruneCutoffs


def prune_params(cutoffs: PruneCutoffs, limit: int) -> dict[str, Any]:
    """The statement's parameters: the types with a cutoff of their own as two
    arrays (a type's cutoff is found by its position), the types kept forever,
    and the cutoff of every other type (NULL keeps them)."""
    overridden = cutoffs.overridden
    return {
        "types": list(overridden),
        "befores": list(overridden.values()),
        "kept": cutoffs.kept,
        "default_before": cutoffs.default,
        "limit": limit,
    }


class PostgresPruner:
    """``TaskPruner`` on PostgreSQL, on the primary (it deletes)."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    async def prune(self, cutoffs: PruneCutoffs, limit: int) -> int:
        if cutoffs.keeps_all:
            return 0  # every type is kept
        return await self._db.run(
            "prune_tasks", prune_params(cutoffs, limit), action="delete finished tasks past their retention"
        )
