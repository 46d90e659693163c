"""What a listing asks the repository for: filters and a keyset position.

Pages are keyset-paginated on (created_at, id), newest first: a page starts
strictly after the last task of the previous one, so tasks inserted while a
client pages through (all newer) never shift, repeat or skip entries. A bulk
action walks its tasks the same way (``submit/bulk.py``).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from taskcore.model.status import TaskStatus
from taskcore.model.task import Task


class TaskQuery(msgspec.Struct, frozen=True, kw_only=True):
    owner: str | None = None  # None: every owner's tasks
    status: TaskStatus | None = None
    statuses: frozenset[TaskStatus] | None = None  # any of these (a bulk action's); None: any status
    type: str | None = None
    queue: str | None = None
    tags: tuple[str, ...] = ()  # every one of these (model/tags.py)
    created_after: datetime | None = None  # strictly after
    created_before: datetime | None = None  # strictly before
    limit: int = 50
    before: tuple[datetime, int] | None = None  # (created_at, id) of the previous page's last task

    def matches(self, task: Task) -> bool:
        """The same filter in Python, for in-memory repositories (and for a
        bulk action that reads a task again)."""
        return (
            task.visible_to(self.owner)
            and (self.status is None or task.status is self.status)
            and (self.statuses is None or task.status in self.statuses)
            and (self.type is None or task.type == self.type)
            and (self.queue is None or task.queue == self.queue)
            and all(tag in task.tags for tag in self.tags)
            and (self.created_after is None or task.created_at > self.created_after)
            and (self.created_before is None or task.created_at < self.created_before)
            and (self.before is None or (task.created_at, task.id) < self.before)
        )
