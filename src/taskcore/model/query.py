"""What a listing asks the repository for: filters and a keyset position.

Pages are keyset-paginated on (created_at, id), newest first: a page starts
strictly after the last task of the previous one, so tasks inserted while a
client pages through (all newer) never shift, repeat or skip entries.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from taskcore.model.status import TaskStatus
from taskcore.model.task import Task


class TaskQuery(msgspec.Struct, frozen=True, kw_only=True):
    owner: str | None = None  # None: every owner's tasks
    status: TaskStatus | None = None
    type: str | None = None
    queue: str | None = None
    limit: int = 50
    before: tuple[datetime, int] | None = None  # (created_at, id) of the previous page's last task

    def matches(self, task: Task) -> bool:
        """The same filter in Python, for in-memory repositories."""
        return (
            task.visible_to(self.owner)
            and (self.status is None or task.status is self.status)
            and (self.type is None or task.type == self.type)
            and (self.queue is None or task.queue == self.queue)
            and (self.before is None or (task.created_at, task.id) < self.before)
        )
