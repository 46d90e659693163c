"""The behaviour every adapter of paused queues and queue loads must have.

Subclass ``QueueStatesContract`` next to two fixtures over one opened, empty
database: ``queue_states`` (``MemoryQueues``, ``PostgresQueues``: both
``QueueSwitches`` and ``QueueLoads``) and ``tasks`` (the task table's
adapter, see ``tests/contracts/tasks.py``), through which the tests add and
claim tasks.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from taskcore.model.queues import QueueLoad
from taskcore.ports import QueueLoads, QueueSwitches
from tests.contracts.tasks import LEASE, Tasks, later, new_task


class QueueStates(QueueSwitches, QueueLoads, Protocol):
    """Both ports, as one adapter implements them."""


async def add(tasks: Tasks, queue: str, *, run_at: float = 0) -> int:
    task = await tasks.add(msgspec.structs.replace(new_task(run_at=later(run_at)), queue=queue))
    return task.id


class QueueStatesContract:
    async def test_a_pause_is_kept_until_resumed_and_repeating_either_changes_nothing(
        self, queue_states: QueueStates
    ) -> None:
        assert await queue_states.paused() == frozenset()
        assert await queue_states.pause("emails", later(1))
        assert not await queue_states.pause("emails", later(2))  # already paused
        assert await queue_states.pause("reports", later(3))
        assert await queue_states.paused() == {"emails", "reports"}
        assert await queue_states.resume("emails", later(4))
        assert not await queue_states.resume("emails", later(5))  # not paused any more
        assert not await queue_states.resume("never-paused", later(5))
        assert await queue_states.paused() == {"reports"}
        assert await queue_states.pause("emails", later(6))  # paused again
        assert await queue_states.paused() == {"emails", "reports"}

    async def test_a_task_of_a_paused_queue_is_not_claimed_until_it_is_resumed(
        self, queue_states: QueueStates, tasks: Tasks
    ) -> None:
        mail, plain = await add(tasks, "emails"), await add(tasks, "default")
        await queue_states.pause("emails", later(1))
        assert await tasks.claim(mail, later(2), LEASE) is None
        assert await tasks.claim(mail, later(2), LEASE, alone=True) is None
        claimed = await tasks.claim(plain, later(2), LEASE)  # other queues carry on
        assert claimed is not None
        await queue_states.resume("emails", later(3))
        resumed = await tasks.claim(mail, later(4), LEASE)
        assert resumed is not None
        assert resumed.queue == "emails"

    async def test_loads_count_each_queues_running_waiting_and_scheduled_tasks(
        self, queue_states: QueueStates, tasks: Tasks
    ) -> None:
        assert await queue_states.loads(later(10)) == {}
        running = await add(tasks, "emails")
        assert await tasks.claim(running, later(1), LEASE) is not None
        await add(tasks, "emails")
        await add(tasks, "emails", run_at=60)
        await add(tasks, "default", run_at=5)
        done = await tasks.claim(await add(tasks, "default"), later(1), LEASE)
        assert done is not None
        assert await tasks.save(done.complete("ok", later(2)))  # finished: counted nowhere
        loads = await queue_states.loads(later(10))
        assert loads == {
            "emails": QueueLoad(running=1, waiting=1, scheduled=1),
            "default": QueueLoad(running=0, waiting=1, scheduled=0),
        }
