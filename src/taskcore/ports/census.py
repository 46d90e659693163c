"""The port of the wake-up census: finding PENDING tasks whose message was lost.

The database says which tasks wait for a worker; the broker only carries
their wake-ups, and a broker can lose them (a classic queue's node replaced
without its disk, a queue purged by hand). The sweeper counts both sides; when
the tasks outnumber the messages for a while, the difference is woken again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from taskcore.model.queues import DEFAULT_QUEUE
from taskcore.model.task import Task


class WakeUpCensus(Protocol):
    async def take_missing(
        self,
        *,
        ready: int,
        now: datetime,
        settled_before: datetime,
        held_since: datetime,
        persisting: timedelta,
        limit: int,
        read_at: datetime | None = None,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> list[Task]:
        """PENDING tasks to publish again because their messages are gone.

        Only tasks of ``queues`` count (the named queues whose ``ready``
        counts were summed), so tasks left in a queue no worker knows any more
        are not woken again and again.

        Counts the due PENDING tasks whose message was confirmed before
        ``read_at`` (when ``ready`` was read from the broker; default ``now``;
        a delayed task also past its due time by a tenth of its delay, the
        lateness the delay buckets allow) against ``ready`` (messages waiting
        on the work queue) plus the messages the workers seen since
        ``held_since`` hold. The tasks one message wakes share its
        confirmation time (``DispatchLog.mark_dispatched``), so their
        messages are counted as distinct times. While those outnumber the
        messages on the broker, the census remembers since when; once that has
        lasted ``persisting``, the tasks of as many messages as the
        difference (at most ``limit`` tasks), confirmed before both
        ``settled_before`` and the deficit's start, highest priority and
        oldest confirmation first, are stamped as dispatched ``now`` and
        returned. A lasting deficit with none of those left (the tasks it
        counts were confirmed after it began, or woken during it and lost
        again) begins again at ``now``. One census at a time across all
        sweepers: the others get ``[]``, as does a census without a lasting
        deficit.
        """
        ...
