"""The task statements in memory, with the same guards as the SQL ones.

Implements ``TaskStore``, ``TaskFinder``, ``AttemptStore``,
``TransitionStore`` and ``DispatchLog`` over a ``MemoryDatabase``. The
unique-key rule is the database index's (``model/uniqueness.py``): no two
unfinished tasks of one type and owner with one key, checked by every add and
by every save that makes a finished task unfinished again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from taskcore.adapters.memory.database import MemoryDatabase, UsedKey
from taskcore.adapters.memory.transactional import add_within
from taskcore.adapters.memory.webhooks import webhook_events
from taskcore.errors import InvalidInput, UnstorableValue
from taskcore.model.idempotency import AddedOnce, IdempotencyKey
from taskcore.model.limits import LimitsOf, no_limits, scope
from taskcore.model.query import TaskQuery
from taskcore.model.status import TaskStatus
from taskcore.model.task import NewTask, Task
from taskcore.model.uniqueness import Added, UniqueKeyTaken, holds_unique_key, unique_slot
from taskcore.ports import Transaction


class MemoryTasks:
    def __init__(self, database: MemoryDatabase, *, limits: LimitsOf = no_limits) -> None:
        """``limits``: each type's concurrency and rate limits, as the claim applies them."""
        self.db = database
        self._limits = limits

    async def add(self, new: NewTask) -> Task:
        added = await self.add_unique(new)
        if not added.created:
            raise UniqueKeyTaken.adding(new.type, new.unique_key)
        return added.task

    async def add_unique(self, new: NewTask) -> Added:
        self.db.check()
        self.db.storable(new.input, new.unique_key)
        if missing := [task_id for task_id in new.after if task_id not in self.db.tasks]:
            raise InvalidInput(f"it runs after task {missing[0]}, which does not exist", after=missing[0])
        slot = None if new.unique_key is None else unique_slot(new.type, new.owner, new.unique_key)
        if slot is not None and (holder := self._holder(slot)) is not None:
            return Added(holder, created=False)
        task = Task.created(self.db.next_id(), new)
        self.db.tasks[task.id] = task
        if slot is not None:
            self.db.unique_keys[slot] = task.id
        return Added(task, created=True)

    async def add_many(self, news: Sequence[NewTask]) -> list[Added]:
        """All or nothing, as in one transaction: every check before any store."""
        self.db.check()
        for index, new in enumerate(news):
            try:
                self.db.storable(new.input, new.unique_key)
            except UnstorableValue as exc:
                raise UnstorableValue(f"items[{index}]: {exc}", index=index) from exc
            if missing := [task_id for task_id in new.after if task_id not in self.db.tasks]:
                raise InvalidInput(f"items[{index}]: it runs after task {missing[0]}, which does not exist")
        return [await self.add_unique(new) for new in news]

    async def add_within(self, transaction: Transaction, new: NewTask) -> Added:
        return await add_within(self.db, transaction, new)

    async def add_once(self, new: NewTask, key: IdempotencyKey) -> AddedOnce:
        self.db.check()
        slot = (new.owner or "", key.key)
        used = self.db.idempotency_keys.get(slot)
        if used is not None and used.used_at >= key.expired_before:
            return AddedOnce(
                self.db.tasks[used.task_id],
                replayed=True,
                request_hash=used.request_hash,
                deduplicated=used.deduplicated,
            )
        added = await self.add_unique(new)
        deduplicated = not added.created
        self.db.idempotency_keys[slot] = UsedKey(
            key.request_hash, added.task.id, new.created_at, deduplicated
        )
        return AddedOnce(added.task, replayed=False, request_hash=key.request_hash, deduplicated=deduplicated)

    def _holder(self, slot: tuple[str, str, str]) -> Task | None:
        """The unfinished task holding this unique key, if any."""
        task = self.db.tasks.get(self.db.unique_keys.get(slot, 0))
        return task if task is not None and holds_unique_key(task) else None

    async def get(self, task_id: int, *, fresh: bool = False) -> Task | None:
        self.db.check()
        return self.db.tasks.get(task_id)

    async def find(self, query: TaskQuery, *, fresh: bool = False) -> list[Task]:
        self.db.check()
        found = [t for t in self.db.tasks.values() if query.matches(t)]
        found.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        return found[: query.limit]

    async def claim(
        self, task_id: int, now: datetime, lease: timedelta, *, alone: bool = False
    ) -> Task | None:
        self.db.check()
        task = self.db.tasks.get(task_id)
        if (
            task is None
            or not task.is_due(now)
            or not task.may_claim(alone=alone)
            or task.queue in self.db.paused_queues
        ):
            return None
        limits = self._limits(task.type)
        if task.concurrency_key is not None and limits.concurrency is not None:
            running = sum(
                1
                for other in self.db.tasks.values()
                if other.status is TaskStatus.PROCESSING
                and other.type == task.type
                and other.concurrency_key == task.concurrency_key
            )
            if running >= limits.concurrency:
                self.db.throttled.add(task_id)  # parked until a slot frees
                self.db.rate_slots.pop(task_id, None)  # a reserved start it could not use lapses
                return None
        if task.rate_key is not None and limits.rate is not None and task_id not in self.db.rate_slots:
            slot = self._reserve(scope(task.type, task.rate_key), now, limits.rate.interval)
            if slot > now:
                deferred = task.defer(slot, now)
                self.db.tasks[task_id] = deferred
                self.db.dispatched_at.pop(task_id, None)
                self.db.rate_slots[task_id] = slot
                return deferred
        claimed = task.claim(now, lease, alone=alone)
        self.db.tasks[task_id] = claimed
        self.db.throttled.discard(task_id)
        self.db.rate_slots.pop(task_id, None)
        return claimed

    def _reserve(self, rate_scope: str, now: datetime, interval: timedelta) -> datetime:
        """The next start of ``rate_scope`` (now, or when it is free), and the one after it."""
        slot = max(self.db.rate_next.get(rate_scope, now), now)
        self.db.rate_next[rate_scope] = slot + interval
        return slot

    async def wake(self, task_type: str, key: str) -> list[Task]:
        self.db.check()
        parked = [
            task
            for task_id in self.db.throttled
            if (task := self.db.tasks.get(task_id)) is not None
            and task.status is TaskStatus.PENDING
            and (task.type, task.concurrency_key) == (task_type, key)
        ]
        if not parked:
            return []
        woken = min(parked, key=lambda task: (-task.priority, task.id))
        self.db.throttled.discard(woken.id)
        self.db.dispatched_at.pop(woken.id, None)
        return [woken]

    async def save(self, task: Task) -> bool:
        self.db.check()
        self.db.storable(task.result, task.error, task.progress_message)
        stored = self.db.tasks.get(task.id)
        if stored is None or stored.version != task.version - 1:
            return False
        if holds_unique_key(task) and not holds_unique_key(stored):
            slot = unique_slot(task.type, task.owner, task.unique_key or "")
            if self._holder(slot) is not None:
                raise UniqueKeyTaken.reviving(task)
            self.db.unique_keys[slot] = task.id
        self.db.tasks[task.id] = task
        if task.status is TaskStatus.PENDING:
            self.db.dispatched_at.pop(task.id, None)
        if task.is_final and stored.status is not task.status:
            webhook_events(self.db, task)  # in the same "transaction", as PostgreSQL's trigger
        return True

    async def renew_lease(self, task_id: int, version: int, lease_until: datetime) -> bool:
        self.db.check()
        task = self.db.tasks.get(task_id)
        if task is None or task.version != version or task.status is not TaskStatus.PROCESSING:
            return False
        self.db.tasks[task_id] = msgspec.structs.replace(task, lease_until=lease_until)
        return True

    async def mark_dispatched(self, confirmed: Sequence[tuple[int, datetime]]) -> None:
        self.db.check()
        for task_id, at in confirmed:
            task = self.db.tasks.get(task_id)
            if task is not None and task.status is TaskStatus.PENDING:
                self.db.dispatched_at[task_id] = at
