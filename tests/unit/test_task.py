"""The status rules, with no I/O."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from taskcore import InvalidTransition, NewTask, Task, TaskStatus
from taskcore.model.attempts import MAX_ATTEMPT_ERROR, MAX_ATTEMPT_LOG, Attempt, AttemptOutcome
from taskcore.model.progress import MAX_PROGRESS_MESSAGE, Progress

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def pending(max_attempts: int = 3) -> Task:
    return Task.created(
        7, NewTask(type="reverse", input="abc", max_attempts=max_attempts, run_at=T0, created_at=T0)
    )


def test_a_new_task_is_pending_at_version_one() -> None:
    task = pending()
    assert (task.status, task.version, task.attempts, task.result) == (TaskStatus.PENDING, 1, 0, None)
    assert task.is_due(T0)
    assert not task.is_due(T0 - timedelta(seconds=1))


def test_claim_counts_the_attempt_and_sets_a_lease() -> None:
    claimed = pending().claim(T0, LEASE)
    assert claimed.status is TaskStatus.PROCESSING
    assert claimed.attempts == 1
    assert claimed.version == 2
    assert claimed.lease_until == T0 + LEASE
    assert claimed.started_at == T0


def test_complete_records_the_result_and_finishes() -> None:
    done = pending().claim(T0, LEASE).complete("cba", T0 + LEASE)
    assert done.status is TaskStatus.COMPLETED
    assert done.result == "cba"
    assert done.lease_until is None
    assert done.finished_at == T0 + LEASE
    assert done.is_final
    assert done.version == 3


def test_fail_retries_while_attempts_remain_then_fails() -> None:
    task = pending(max_attempts=2)
    retry = task.claim(T0, LEASE).fail("boom", T0, timedelta(seconds=4))
    assert retry.status is TaskStatus.PENDING
    assert retry.run_at == T0 + timedelta(seconds=4)
    assert retry.error == "boom"
    assert not retry.is_due(T0)
    final = retry.claim(T0 + timedelta(seconds=4), LEASE).fail("boom again", T0, timedelta(seconds=8))
    assert final.status is TaskStatus.FAILED
    assert final.attempts == 2
    assert final.error == "boom again"


def test_fail_without_retry_is_final_at_once() -> None:
    failed = pending().claim(T0, LEASE).fail("bad input", T0, None)
    assert failed.status is TaskStatus.FAILED
    assert failed.attempts == 1


def test_release_of_an_attempt_that_ran_alone_counts_it() -> None:
    task = pending(max_attempts=1).claim(T0, LEASE, alone=True)
    assert task.release(T0).status is TaskStatus.FAILED
    again = pending(max_attempts=2).claim(T0, LEASE, alone=True).release(T0)
    assert (again.status, again.attempts, again.suspect) == (TaskStatus.PENDING, 1, False)
    assert again.error == "attempt 1 abandoned: its lease expired"


def test_release_of_an_attempt_beside_others_does_not_count_it_and_makes_the_task_suspect() -> None:
    later = T0 + LEASE
    released = pending(max_attempts=1).claim(T0, LEASE).release(later)
    assert (released.status, released.attempts, released.suspect) == (TaskStatus.PENDING, 0, True)
    assert (released.lease_until, released.started_at, released.run_at) == (None, None, later)
    assert "not counted, it runs alone next" in (released.error or "")
    # Suspect: it starts only alone, and an attempt alone counts.
    assert not released.may_claim(alone=False)
    with pytest.raises(InvalidTransition):
        released.claim(later, LEASE)
    alone = released.claim(later, LEASE, alone=True)
    assert (alone.alone, alone.attempts) == (True, 1)
    assert alone.release(later).status is TaskStatus.FAILED


@pytest.mark.parametrize(
    "verdict",
    [
        lambda t: t.complete("cba", T0),
        lambda t: t.fail("boom", T0, timedelta(seconds=1)),
        lambda t: t.fail("boom", T0, None),
    ],
)
def test_a_verdict_clears_suspicion(verdict: Callable[[Task], Task]) -> None:
    """Its worker lived to store a verdict: this run killed nobody."""
    suspect = pending().claim(T0, LEASE).release(T0)
    assert not verdict(suspect.claim(T0, LEASE, alone=True)).suspect


def test_an_unclaim_keeps_suspicion() -> None:
    suspect = pending().claim(T0, LEASE).release(T0)
    assert suspect.claim(T0, LEASE, alone=True).unclaim(T0).suspect


def test_unclaim_does_not_count_the_attempt() -> None:
    later = T0 + timedelta(seconds=5)
    claimed = pending().claim(T0, LEASE)
    back = claimed.unclaim(later)
    assert back.status is TaskStatus.PENDING
    assert back.attempts == 0
    assert back.lease_until is None
    assert back.started_at is None
    assert back.run_at == later
    assert back.is_due(later)
    assert back.version == claimed.version + 1


def test_cancel_pending_or_processing_but_not_finished() -> None:
    assert pending().cancel(T0).status is TaskStatus.CANCELLED
    assert pending().claim(T0, LEASE).cancel(T0).status is TaskStatus.CANCELLED
    with pytest.raises(InvalidTransition):
        pending().claim(T0, LEASE).complete(1, T0).cancel(T0)


def test_retry_gives_failed_tasks_fresh_attempts() -> None:
    failed = pending(max_attempts=1).claim(T0, LEASE).fail("x", T0, None)
    again = failed.retry(T0 + LEASE)
    assert again.status is TaskStatus.PENDING
    assert again.attempts == 0
    assert again.error is None
    assert (again.started_at, again.finished_at) == (None, None)
    assert again.is_due(T0 + LEASE)


def test_retry_gives_cancelled_tasks_another_run() -> None:
    again = pending().cancel(T0).retry(T0 + LEASE)
    assert again.status is TaskStatus.PENDING
    assert again.is_due(T0 + LEASE)


@pytest.mark.parametrize(
    ("make", "action"),
    [
        (lambda: pending(), lambda t: t.complete(1, T0)),
        (lambda: pending(), lambda t: t.fail("x", T0, None)),
        (lambda: pending(), lambda t: t.release(T0)),
        (lambda: pending(), lambda t: t.retry(T0)),
        (lambda: pending(), lambda t: t.unclaim(T0)),
        (lambda: pending().claim(T0, LEASE), lambda t: t.retry(T0)),
        (lambda: pending().claim(T0, LEASE).complete(1, T0), lambda t: t.retry(T0)),
        (lambda: pending().claim(T0, LEASE).complete(1, T0), lambda t: t.unclaim(T0)),
        (lambda: pending().claim(T0, LEASE), lambda t: t.claim(T0, LEASE)),
        (lambda: pending().claim(T0, LEASE).complete(1, T0), lambda t: t.claim(T0, LEASE)),
        (lambda: pending().claim(T0, LEASE).complete(1, T0), lambda t: t.complete(2, T0)),
        (lambda: pending().cancel(T0), lambda t: t.complete(2, T0)),
    ],
)
def test_illegal_transitions_raise(make, action) -> None:  # type: ignore[no-untyped-def]
    task = make()
    with pytest.raises(InvalidTransition) as err:
        action(task)
    assert err.value.fields["status"] is task.status


def test_transitions_do_not_mutate() -> None:
    task = pending()
    task.claim(T0, LEASE)
    assert task.status is TaskStatus.PENDING
    assert task.version == 1


# -- progress (model/progress.py) ---------------------------------------------------------


@pytest.mark.parametrize("fraction", [True, "0.5", None, [0.5]])
def test_a_progress_fraction_must_be_a_number(fraction: object) -> None:
    with pytest.raises(TypeError, match="from 0 to 1"):
        Progress.reported(fraction)


@pytest.mark.parametrize("fraction", [-0.01, 1.0001, 7, math.nan, math.inf, -math.inf])
def test_a_progress_fraction_must_be_from_0_to_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="from 0 to 1"):
        Progress.reported(fraction)


def test_a_progress_message_is_made_short_and_storable() -> None:
    assert Progress.reported(0, None) == Progress(0.0, None)
    assert Progress.reported(1, "done") == Progress(1.0, "done")
    assert type(Progress.reported(1).fraction) is float
    long = Progress.reported(0.5, "x" * 1000).message
    assert long == "x" * (MAX_PROGRESS_MESSAGE - 1) + "…"
    assert Progress.reported(0.5, "a\x00b\ud800c").message == "ab?c"  # what PostgreSQL text refuses
    with pytest.raises(TypeError, match="must be a string"):
        Progress.reported(0.5, b"bytes")


def test_a_report_is_a_transition_of_the_running_attempt_only() -> None:
    claimed = pending().claim(T0, LEASE)
    reported = claimed.report_progress(Progress(0.4, "reading"), T0 + LEASE)
    assert (reported.version, reported.status) == (claimed.version + 1, TaskStatus.PROCESSING)
    assert (reported.progress, reported.progress_message, reported.progress_at) == (
        0.4,
        "reading",
        T0 + LEASE,
    )
    assert reported.updated_at == T0 + LEASE
    assert reported.same_attempt(claimed)
    for other in (pending(), reported.complete("x", T0), reported.cancel(T0)):
        with pytest.raises(InvalidTransition):
            other.report_progress(Progress(0.5), T0)


def test_completed_is_all_done_with_the_last_message() -> None:
    reported = pending().claim(T0, LEASE).report_progress(Progress(0.4, "reading"), T0)
    kept = reported.complete("x", T0 + LEASE)
    assert (kept.progress, kept.progress_message, kept.progress_at) == (1.0, "reading", T0 + LEASE)
    unwritten = reported.complete("x", T0, report=Progress(0.9, "writing"))
    assert (unwritten.progress, unwritten.progress_message) == (1.0, "writing")
    silent = pending().claim(T0, LEASE).complete("x", T0)
    assert (silent.progress, silent.progress_message) == (1.0, None)


def test_a_failure_keeps_how_far_it_got_until_the_next_attempt_starts() -> None:
    reported = pending().claim(T0, LEASE).report_progress(Progress(0.4, "reading"), T0)
    retrying = reported.fail("boom", T0, timedelta(seconds=1), report=Progress(0.6, "writing"))
    assert (retrying.progress, retrying.progress_message) == (0.6, "writing")
    failed = reported.fail("boom", T0, None)
    assert (failed.progress, failed.progress_message) == (0.4, "reading")
    next_attempt = retrying.claim(T0 + LEASE, LEASE)
    assert (next_attempt.progress, next_attempt.progress_message, next_attempt.progress_at) == (
        None,
        None,
        None,
    )
    assert not next_attempt.same_attempt(reported)
    retried = failed.retry(T0 + LEASE)
    assert (retried.progress, retried.progress_message, retried.progress_at) == (None, None, None)


def test_a_second_attempt_is_not_the_same_even_with_the_same_count() -> None:
    """A release beside others gives its attempt back: the next claim has the same count."""
    first = pending().claim(T0, LEASE)
    second = first.release(T0 + LEASE).claim(T0 + 2 * LEASE, LEASE, alone=True)
    assert second.attempts == first.attempts
    assert not second.same_attempt(first)


def test_each_attempt_is_logged_from_its_claim_to_its_end() -> None:
    at = [T0 + timedelta(seconds=n) for n in range(10)]
    first = pending().claim(at[1], LEASE)
    assert first.attempt_log == (Attempt(number=1, claimed_at=at[1]),)
    failed = first.fail("x" * 500, at[2], timedelta(seconds=1))
    second = failed.claim(at[3], LEASE).release(at[4])  # ran beside others: not counted, suspect
    third = second.claim(at[5], LEASE, alone=True).unclaim(at[6])
    done = third.claim(at[7], LEASE, alone=True).complete("ok", at[8])

    log = done.attempt_log
    assert [(a.number, a.claimed_at, a.ended_at, a.outcome) for a in log] == [
        (1, at[1], at[2], AttemptOutcome.FAILED),
        (2, at[3], at[4], AttemptOutcome.ABANDONED),
        (2, at[5], at[6], AttemptOutcome.HANDED_BACK),
        (2, at[7], at[8], AttemptOutcome.COMPLETED),
    ]
    assert log[0].error is not None
    assert len(log[0].error) == MAX_ATTEMPT_ERROR
    assert log[0].error.endswith("…")
    assert (log[1].error, log[2].error, log[3].error) == ("not counted", "not counted", None)


def test_a_cancel_ends_a_running_attempt_and_leaves_a_pending_task_s_log_alone() -> None:
    running = pending().claim(T0, LEASE)
    assert running.cancel(T0 + LEASE).attempt_log[-1].outcome is AttemptOutcome.CANCELLED
    assert pending().cancel(T0).attempt_log == ()


def test_the_log_keeps_the_last_attempts_and_a_retry_keeps_the_log() -> None:
    task = pending(max_attempts=100)
    for n in range(MAX_ATTEMPT_LOG + 5):
        task = task.claim(T0 + timedelta(seconds=n), LEASE).fail(
            "boom", T0 + timedelta(seconds=n), timedelta(0)
        )
    assert len(task.attempt_log) == MAX_ATTEMPT_LOG
    assert task.attempt_log[0].number == 6
    failed = task.claim(T0, LEASE).fail("boom", T0, None)
    assert failed.retry(T0).attempt_log == failed.attempt_log
