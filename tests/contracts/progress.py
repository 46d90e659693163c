"""What the task table must do with progress reports (``taskcore.model.progress``).

A report is a transition (``Task.report_progress``, version + 1) saved with
``TransitionStore.save``; a claim starts the next attempt without progress.
Subclass ``ProgressContract`` next to a ``tasks`` fixture, as for
``tests/contracts/tasks.py``: the memory adapter runs it in the unit tests
and the PostgreSQL adapter in the integration tests.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from taskcore.model.progress import MAX_PROGRESS_MESSAGE, Progress
from taskcore.model.status import TaskStatus
from tests.contracts.tasks import LEASE, Tasks, claimed_task, later


class ProgressContract:
    async def test_reports_round_trip_and_move_the_version(self, tasks: Tasks) -> None:
        claimed = await claimed_task(tasks)
        first = claimed.report_progress(Progress(0.25, "reading"), later(2))
        assert await tasks.save(first)
        assert await tasks.get(claimed.id, fresh=True) == first
        second = first.report_progress(Progress.reported(1, "é" * 300), later(3))
        assert await tasks.save(second)
        stored = await tasks.get(claimed.id, fresh=True)
        assert stored == second
        assert stored is not None
        assert (stored.version, stored.progress, stored.progress_at) == (claimed.version + 2, 1.0, later(3))
        assert stored.progress_message is not None
        assert len(stored.progress_message) == MAX_PROGRESS_MESSAGE

    async def test_a_report_from_a_version_that_moved_on_is_refused(self, tasks: Tasks) -> None:
        """A cancelled (or taken-over) attempt's report writes nothing."""
        claimed = await claimed_task(tasks)
        cancelled = claimed.cancel(later(2))
        assert await tasks.save(cancelled)
        assert not await tasks.save(claimed.report_progress(Progress(0.5), later(3)))
        assert await tasks.get(claimed.id, fresh=True) == cancelled

    async def test_a_heartbeat_keeps_the_reported_progress(self, tasks: Tasks) -> None:
        claimed = await claimed_task(tasks)
        reported = claimed.report_progress(Progress(0.5, "half"), later(2))
        assert await tasks.save(reported)
        assert await tasks.renew_lease(claimed.id, reported.version, later(60))
        stored = await tasks.get(claimed.id, fresh=True)
        assert stored is not None
        assert (stored.progress, stored.progress_message, stored.lease_until) == (0.5, "half", later(60))

    async def test_concurrent_reports_of_many_tasks_each_land(self, tasks: Tasks) -> None:
        """Coalesced into one statement on PostgreSQL, with verdicts beside them."""
        running = [await claimed_task(tasks) for _ in range(10)]
        changes = [
            task.report_progress(Progress(n / 10, f"step {n}"), later(2))
            for n, task in enumerate(running[:8])
        ]
        changes += [running[8].complete("ok", later(2), report=Progress(0.9, "last"))]
        changes += [running[9].fail("boom", later(2), None, report=Progress(0.3, "stuck"))]
        assert await asyncio.gather(*(tasks.save(change) for change in changes)) == [True] * 10
        for change in changes:
            assert await tasks.get(change.id, fresh=True) == change
        done = await tasks.get(running[8].id, fresh=True)
        assert done is not None
        assert (done.status, done.progress, done.progress_message) == (TaskStatus.COMPLETED, 1.0, "last")

    async def test_the_next_attempt_starts_without_progress(self, tasks: Tasks) -> None:
        claimed = await claimed_task(tasks)
        reported = claimed.report_progress(Progress(0.7, "far"), later(2))
        assert await tasks.save(reported)
        retrying = reported.fail("boom", later(3), timedelta(seconds=1))
        assert await tasks.save(retrying)
        between = await tasks.get(claimed.id, fresh=True)
        assert between is not None
        assert (between.status, between.progress, between.progress_message) == (
            TaskStatus.PENDING,
            0.7,
            "far",
        )
        again = await tasks.claim(claimed.id, later(5), LEASE)
        assert again == retrying.claim(later(5), LEASE)
        assert again is not None
        assert (again.progress, again.progress_message, again.progress_at) == (None, None, None)
        assert await tasks.get(claimed.id, fresh=True) == again
