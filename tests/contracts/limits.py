"""The behaviour every claim of limited tasks must have (``taskcore.model.limits``).

Subclass ``LimitsContract`` next to a ``limited`` fixture: the task table's
adapter (``MemoryTasks``, ``PostgresTasks``) over an empty database, built
with ``limits=LIMITS``, and a ``queue_states`` fixture (the paused-queues
adapter over the same database, see ``tests/contracts/queues.py``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec

from taskcore.model.limits import NO_LIMITS, Rate, TypeLimits
from taskcore.model.progress import Progress
from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from tests.contracts.queues import QueueStates
from tests.contracts.tasks import LEASE, Tasks, later, new_task

CAPPED = TypeLimits(concurrency=2)
PER_MINUTE = TypeLimits(rate=Rate(count=1, period=timedelta(minutes=1)))


def LIMITS(task_type: str) -> TypeLimits:
    return {"capped": CAPPED, "per_minute": PER_MINUTE}.get(task_type, NO_LIMITS)


async def add(tasks: Tasks, task_type: str, *, key: str = "", rate: bool = False, run_at: float = 0) -> Task:
    new = msgspec.structs.replace(
        new_task(task_type=task_type, run_at=later(run_at)),
        concurrency_key=None if rate else key,
        rate_key=key if rate else None,
    )
    return await tasks.add(new)


class LimitsContract:
    async def test_a_concurrency_limit_parks_what_is_over_it_until_a_slot_is_woken(
        self, limited: Tasks
    ) -> None:
        tasks = [await add(limited, "capped") for _ in range(3)]
        claimed = [await limited.claim(task.id, later(1), LEASE) for task in tasks]
        assert [task is not None for task in claimed] == [True, True, False]
        assert await limited.get(tasks[2].id, fresh=True) == tasks[2]  # parked: no change it can see
        running = claimed[0]
        assert running is not None
        assert await limited.save(running.complete("ok", later(2)))
        (woken,) = await limited.wake("capped", "")  # type: ignore[attr-defined]
        assert woken == tasks[2]
        assert await limited.wake("capped", "") == []  # type: ignore[attr-defined]  # none parked now
        again = await limited.claim(tasks[2].id, later(3), LEASE)
        assert again is not None
        assert again.status is TaskStatus.PROCESSING

    async def test_each_concurrency_key_has_its_own_slots(self, limited: Tasks) -> None:
        a = [await add(limited, "capped", key="a") for _ in range(3)]
        b = [await add(limited, "capped", key="b") for _ in range(3)]
        claimed = [await limited.claim(task.id, later(1), LEASE) for task in a + b]
        assert [task is not None for task in claimed] == [True, True, False, True, True, False]
        assert await limited.wake("capped", "c") == []  # type: ignore[attr-defined]

    async def test_concurrent_claims_of_one_key_let_exactly_the_limit_through(self, limited: Tasks) -> None:
        tasks = [await add(limited, "capped") for _ in range(12)]
        claimed = await asyncio.gather(*(limited.claim(task.id, later(1), LEASE) for task in tasks))
        assert sum(task is not None for task in claimed) == CAPPED.concurrency

    async def test_the_next_parked_task_woken_is_the_highest_priority_then_the_oldest(
        self, limited: Tasks
    ) -> None:
        holders = [await add(limited, "capped") for _ in range(2)]
        for task in holders:
            assert await limited.claim(task.id, later(1), LEASE) is not None
        low = await add(limited, "capped")
        high = await limited.add(
            msgspec.structs.replace(new_task(task_type="capped"), concurrency_key="", priority=7)
        )
        for task in (low, high):
            assert await limited.claim(task.id, later(1), LEASE) is None
        assert [task.id for task in await limited.wake("capped", "")] == [high.id]  # type: ignore[attr-defined]
        assert [task.id for task in await limited.wake("capped", "")] == [low.id]  # type: ignore[attr-defined]

    async def test_a_rate_limit_defers_each_start_to_the_next_free_one(self, limited: Tasks) -> None:
        tasks = [await add(limited, "per_minute", rate=True) for _ in range(3)]
        outcomes = [await limited.claim(task.id, later(1), LEASE) for task in tasks]
        assert [o.status if o else None for o in outcomes] == [
            TaskStatus.PROCESSING,
            TaskStatus.PENDING,
            TaskStatus.PENDING,
        ]
        assert outcomes[1] == tasks[1].defer(later(61), later(1))
        assert outcomes[2] == tasks[2].defer(later(121), later(1))
        assert await limited.get(tasks[2].id, fresh=True) == outcomes[2]
        assert await limited.claim(tasks[1].id, later(30), LEASE) is None  # not due yet
        second = await limited.claim(tasks[1].id, later(61), LEASE)  # its reserved start: no new one
        assert second is not None
        assert second.status is TaskStatus.PROCESSING
        late = await add(limited, "per_minute", rate=True)  # after the two reserved ones
        deferred = await limited.claim(late.id, later(62), LEASE)
        assert deferred is not None
        assert deferred.run_at == later(181)

    async def test_rate_keys_are_apart(self, limited: Tasks) -> None:
        a, b = (
            await add(limited, "per_minute", key="a", rate=True),
            await add(limited, "per_minute", key="b", rate=True),
        )
        for task in (a, b):
            claimed = await limited.claim(task.id, later(1), LEASE)
            assert claimed is not None
            assert claimed.status is TaskStatus.PROCESSING

    async def test_a_type_without_limits_is_claimed_whatever_keys_its_tasks_carry(
        self, limited: Tasks
    ) -> None:
        """Keys stored at submit by a registry that limited the type, claimed by one that does not."""
        tasks = [await add(limited, "echo") for _ in range(5)]
        claimed = [await limited.claim(task.id, later(1), LEASE) for task in tasks]
        assert all(task is not None and task.status is TaskStatus.PROCESSING for task in claimed)

    async def test_a_limited_task_keeps_the_other_claim_rules(
        self, limited: Tasks, queue_states: QueueStates
    ) -> None:
        not_due = await add(limited, "capped", run_at=60)
        assert await limited.claim(not_due.id, later(1), LEASE) is None
        suspect = await add(limited, "capped", key="s")
        running = await limited.claim(suspect.id, later(1), LEASE)
        assert running is not None
        assert await limited.save(running.release(later(40)))  # its worker died beside others
        assert await limited.claim(suspect.id, later(41), LEASE) is None
        alone = await limited.claim(suspect.id, later(41), LEASE, alone=True)
        assert alone is not None
        assert alone.alone
        paused = msgspec.structs.replace(new_task(task_type="capped"), concurrency_key="p", queue="emails")
        mail = await limited.add(paused)
        await queue_states.pause("emails", later(1))
        assert await limited.claim(mail.id, later(2), LEASE) is None
        await queue_states.resume("emails", later(3))
        assert await limited.claim(mail.id, later(4), LEASE) is not None

    async def test_a_limited_claim_starts_without_the_last_attempts_progress(self, limited: Tasks) -> None:
        task = await add(limited, "capped")
        running = await limited.claim(task.id, later(1), LEASE)
        assert running is not None
        reported = running.report_progress(Progress(0.6, "far"), later(2))
        assert await limited.save(reported)
        retrying = reported.fail("boom", later(3), timedelta(seconds=1))
        assert await limited.save(retrying)
        again = await limited.claim(task.id, later(5), LEASE)  # started when it got its slot: not compared
        assert again is not None
        assert (again.status, again.attempts) == (TaskStatus.PROCESSING, 2)
        assert (again.progress, again.progress_message, again.progress_at) == (None, None, None)
        assert await limited.get(task.id, fresh=True) == again
