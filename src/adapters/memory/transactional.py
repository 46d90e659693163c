"""Transactional enqueue in memory: a transaction a test commits or rolls
back, and the notices of the tasks its commit made visible."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from taskcore.adapters.memory.database import MemoryDatabase
from taskcore.errors import ConfigurationError, InvalidInput
from taskcore.model.task import NewTask, Task
from taskcore.model.uniqueness import Added
from taskcore.ports import Transaction


class MemoryTransaction:
    """What a caller's open transaction is to the memory tables: the tasks
    added in it are nobody else's until ``commit``; ``rollback`` forgets them."""

    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database
        self.added: list[Task] = []
        self.open = True

    def commit(self) -> None:
        self._end()
        for task in self.added:
            self.db.tasks[task.id] = task
        ids = [task.id for task in self.added]
        for listener in list(self.db.commit_listeners):
            listener.put_nowait(ids)

    def rollback(self) -> None:
        self._end()
        self.added.clear()

    def _end(self) -> None:
        if not self.open:
            raise RuntimeError("the transaction has ended")
        self.open = False


async def add_within(database: MemoryDatabase, transaction: Transaction, new: NewTask) -> Added:
    if not isinstance(transaction, MemoryTransaction) or transaction.db is not database:
        raise ConfigurationError(
            f"the memory adapters enqueue inside a MemoryTransaction, not a {type(transaction).__name__}"
        )
    database.check()
    database.storable(new.input, new.unique_key)
    mine = {task.id: task for task in transaction.added}
    for parent_id in new.after:
        parent = mine.get(parent_id) or database.tasks.get(parent_id)
        if parent is None or not parent.visible_to(new.owner):
            raise InvalidInput(f"it runs after task {parent_id}, which does not exist", after=parent_id)
    task = Task.created(database.next_id(), new)
    transaction.added.append(task)
    return Added(task, created=True)


class MemoryCommitNotices:
    """``CommitNotices`` of the memory tables: every listener hears every commit
    (one process: there is no other listener to defer to)."""

    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database

    @asynccontextmanager
    async def committed(self) -> AsyncIterator[AsyncIterator[list[int]]]:
        inbox: asyncio.Queue[list[int]] = asyncio.Queue()
        self.db.commit_listeners.append(inbox)
        try:
            yield _drain(inbox)
        finally:
            self.db.commit_listeners.remove(inbox)


async def _drain(inbox: asyncio.Queue[list[int]]) -> AsyncIterator[list[int]]:
    while True:
        yield await inbox.get()
