"""Bulk cancel and retry: every task a filter matches, a batch at a time,
each through its rule on ``Task`` and ``Transitions.record``.

Through the service on controlled time (``ManualClock``), with a finder that
races the walk where a test needs a worker or a client in between; and over
HTTP with the embedded worker under ``looptime``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from litestar import Litestar

from taskcore import HandlerRegistry, InvalidInput, RepositoryUnavailable, TaskService, TaskStatus
from taskcore.adapters.memory import MemoryDatabase, MemoryTasks
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.http.bulk_controller import CancellableStatus, RetryableStatus
from taskcore.entrypoints.settings import load_settings
from taskcore.errors import ConfigurationError
from taskcore.model.query import TaskQuery
from taskcore.model.task import CANCELLABLE, RETRYABLE, Task
from taskcore.submit.bulk import BATCH, BulkOutcome
from tests.core import Core, ManualClock, build_core

from .test_http import Client, eventually, on_loop_time, serving, wait_for_status

LEASE = timedelta(seconds=30)


def bulk_registry(stopped: list[float] | None = None) -> HandlerRegistry:
    """``stopped`` collects the ``sleepy`` handlers that were cancelled while asleep."""
    registry = HandlerRegistry()

    @registry.handler
    async def reverse(text: str) -> str:
        return text[::-1]

    @registry.handler(queue="emails")
    async def mail(to: str) -> str:
        return to

    @registry.handler(max_attempts=1)
    async def explode(_: str) -> None:
        raise RuntimeError("handler bug")

    @registry.handler
    async def sleepy(seconds: float) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            if stopped is not None:
                stopped.append(asyncio.get_running_loop().time())
            raise
        return "woke up"

    return registry


@pytest.fixture
def core(clock: ManualClock) -> Core:
    return build_core(clock=clock, registry=bulk_registry())


class RacingFinder:
    """The tasks' finder, with something happening between a batch's read and
    its transitions (a worker's claim, a client's cancel, a new submit)."""

    def __init__(self, tasks: MemoryTasks, meanwhile: Callable[[list[Task]], Awaitable[None]]) -> None:
        self._tasks = tasks
        self._meanwhile = meanwhile
        self.limits: list[int] = []

    async def find(self, query: TaskQuery, *, fresh: bool = False) -> list[Task]:
        assert fresh, "a bulk action reads where it writes"
        self.limits.append(query.limit)
        found = await self._tasks.find(query, fresh=fresh)
        await self._meanwhile(found)
        return found


def service_with(core: Core, finder: RacingFinder) -> TaskService:
    return TaskService(
        tasks=core.tasks,
        transitions=core.transitions,
        registry=core.registry,
        clock=core.clock,
        finder=finder,
    )


def statuses(core: Core, ids: list[int]) -> list[TaskStatus]:
    return [core.db.tasks[task_id].status for task_id in ids]


async def test_cancel_matching_cancels_pending_and_processing_tasks_of_the_filter_only(core: Core) -> None:
    pending = (await core.service.submit("reverse", "a")).id
    running = (await core.service.submit("reverse", "b")).id
    assert await core.tasks.claim(running, core.clock.now(), LEASE) is not None
    done = (await core.service.submit("reverse", "c")).id
    await core.service.cancel(done)
    other_type = (await core.service.submit("mail", "x")).id
    outcome = await core.service.cancel_matching(TaskQuery(type="reverse"))
    assert outcome == BulkOutcome(matched=2, changed=2, resume_before=None)
    assert statuses(core, [pending, running, done, other_type]) == [TaskStatus.CANCELLED] * 3 + [
        TaskStatus.PENDING
    ]
    assert core.cache.entries[running][0] == core.db.tasks[running]  # written through, as one cancel is
    assert core.queue.published == 4  # the submits' wake-ups only
    # Safe to repeat: what was cancelled no longer matches.
    assert await core.service.cancel_matching(TaskQuery(type="reverse")) == BulkOutcome(0, 0, None)


async def test_the_filter_narrows_by_owner_status_queue_and_creation_time(
    core: Core, clock: ManualClock
) -> None:
    ids = {}
    for name, owner, task_type in [
        ("a-old", "alice", "reverse"),
        ("a-mail", "alice", "mail"),
        ("b", "bob", "reverse"),
        ("a-new", "alice", "reverse"),
    ]:
        clock.advance(10)
        ids[name] = (await core.service.submit(task_type, name, owner=owner)).id
    started = core.db.tasks[ids["a-old"]].created_at
    assert await core.tasks.claim(ids["a-new"], clock.now(), LEASE) is not None

    by_queue = await core.service.cancel_matching(TaskQuery(owner="alice", queue="emails"))
    assert (by_queue.matched, core.db.tasks[ids["a-mail"]].status) == (1, TaskStatus.CANCELLED)
    only_pending = await core.service.cancel_matching(
        TaskQuery(owner="alice", status=TaskStatus.PENDING, created_after=started)
    )
    assert only_pending.matched == 0  # a-new is PROCESSING, a-old was created at `started`, not after
    window = TaskQuery(owner="alice", created_before=started + timedelta(seconds=1))
    assert (await core.service.cancel_matching(window)).changed == 1
    assert statuses(core, [ids["a-old"], ids["b"], ids["a-new"]]) == [
        TaskStatus.CANCELLED,
        TaskStatus.PENDING,
        TaskStatus.PROCESSING,
    ]


@pytest.mark.parametrize(
    ("action", "status"),
    [("cancel", TaskStatus.COMPLETED), ("cancel", TaskStatus.FAILED), ("retry", TaskStatus.PENDING)],
)
async def test_a_status_the_action_does_not_apply_to_is_invalid_input(
    core: Core, action: str, status: TaskStatus
) -> None:
    bulk = core.service.cancel_matching if action == "cancel" else core.service.retry_matching
    with pytest.raises(InvalidInput, match=f"{action} applies to"):
        await bulk(TaskQuery(status=status))


@pytest.mark.parametrize("limit", [0, -1, 10_001])
async def test_the_limit_is_from_1_to_10000(core: Core, limit: int) -> None:
    with pytest.raises(InvalidInput, match="limit"):
        await core.service.cancel_matching(TaskQuery(type="reverse"), limit=limit)


async def test_tasks_are_walked_in_batches_up_to_the_limit_and_a_next_call_goes_on(core: Core) -> None:
    count = 2 * BATCH + 234
    ids = [(await core.service.submit("reverse", f"t{n}")).id for n in range(count)]
    finder = RacingFinder(core.tasks, lambda found: _nothing())
    service = service_with(core, finder)

    first = await service.cancel_matching(TaskQuery(type="reverse"), limit=BATCH + 100)
    assert (first.matched, first.changed) == (BATCH + 100, BATCH + 100)
    assert first.resume_before is not None
    assert finder.limits == [BATCH + 1, 101]  # one more than needed tells whether any is left
    newest_first = sorted(ids, reverse=True)
    assert set(statuses(core, newest_first[: BATCH + 100])) == {TaskStatus.CANCELLED}
    assert set(statuses(core, newest_first[BATCH + 100 :])) == {TaskStatus.PENDING}

    rest = await service.cancel_matching(TaskQuery(type="reverse", before=first.resume_before))
    assert rest == BulkOutcome(count - BATCH - 100, count - BATCH - 100, None)
    assert set(statuses(core, ids)) == {TaskStatus.CANCELLED}
    assert {core.db.tasks[task_id].version for task_id in ids} == {2}  # each changed once


async def _nothing() -> None:
    return None


async def test_a_lost_race_is_read_again_and_a_task_that_left_the_filter_is_skipped(
    core: Core, clock: ManualClock
) -> None:
    """Between a batch's read and its transitions a worker claims one task
    (still cancellable: cancelled at its new version), another finishes
    (skipped), and a client submits a new one (newer than the walk: untouched)."""
    claimed, finished, untouched = [(await core.service.submit("reverse", f"t{n}")).id for n in range(3)]
    late: list[int] = []

    async def meanwhile(found: list[Task]) -> None:
        if not found or late:
            return
        assert await core.tasks.claim(claimed, clock.now(), LEASE) is not None
        done = await core.tasks.claim(finished, clock.now(), LEASE)
        assert done is not None
        assert await core.tasks.save(done.complete("ok", clock.now()))
        late.append((await core.service.submit("reverse", "late")).id)

    outcome = await service_with(core, RacingFinder(core.tasks, meanwhile)).cancel_matching(
        TaskQuery(type="reverse")
    )
    assert outcome == BulkOutcome(matched=3, changed=2, resume_before=None)
    assert statuses(core, [claimed, finished, untouched, *late]) == [
        TaskStatus.CANCELLED,
        TaskStatus.COMPLETED,
        TaskStatus.CANCELLED,
        TaskStatus.PENDING,
    ]


async def test_a_task_that_moved_out_of_the_asked_status_is_skipped(core: Core, clock: ManualClock) -> None:
    task = (await core.service.submit("reverse", "a")).id

    async def meanwhile(found: list[Task]) -> None:
        if found and core.db.tasks[task].status is TaskStatus.PENDING:
            assert await core.tasks.claim(task, clock.now(), LEASE) is not None

    service = service_with(core, RacingFinder(core.tasks, meanwhile))
    outcome = await service.cancel_matching(TaskQuery(status=TaskStatus.PENDING))
    assert outcome == BulkOutcome(matched=1, changed=0, resume_before=None)
    assert core.db.tasks[task].status is TaskStatus.PROCESSING


async def test_a_database_outage_midway_raises_and_a_repeat_finishes_the_work(core: Core) -> None:
    ids = [(await core.service.submit("reverse", f"t{n}")).id for n in range(2 * BATCH)]
    calls = 0

    async def meanwhile(found: list[Task]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            core.db.available = False  # after the first batch is done

    service = service_with(core, RacingFinder(core.tasks, meanwhile))
    with pytest.raises(RepositoryUnavailable):
        await service.cancel_matching(TaskQuery(type="reverse"))
    assert statuses(core, ids).count(TaskStatus.CANCELLED) == BATCH
    core.db.available = True
    assert await core.service.cancel_matching(TaskQuery(type="reverse")) == BulkOutcome(BATCH, BATCH, None)
    assert {core.db.tasks[task_id].version for task_id in ids} == {2}


async def test_retry_matching_retries_failed_and_cancelled_tasks_and_publishes_their_wake_ups(
    core: Core,
) -> None:
    failing = [(await core.service.submit("explode", "x")).id for _ in range(3)]
    async with core.queue.consume(prefetch=10) as consumer:
        for _ in failing:
            await core.processor.process(await consumer.next())
    cancelled = (await core.service.submit("reverse", "y")).id
    await core.service.cancel(cancelled)
    pending = (await core.service.submit("reverse", "z")).id
    woken = core.queue.woken

    outcome = await core.service.retry_matching(TaskQuery(status=TaskStatus.FAILED))
    assert outcome == BulkOutcome(3, 3, None)
    assert [(t.status, t.attempts, t.error) for t in map(core.db.tasks.get, failing)] == [
        (TaskStatus.PENDING, 0, None)
    ] * 3  # type: ignore[union-attr]
    assert core.queue.woken == woken + 3
    assert (await core.service.retry_matching(TaskQuery(type="reverse"))).changed == 1
    assert statuses(core, [cancelled, pending]) == [TaskStatus.PENDING, TaskStatus.PENDING]
    assert await core.service.retry_matching(TaskQuery(type="reverse")) == BulkOutcome(0, 0, None)


async def test_a_retry_whose_unique_key_another_task_holds_is_skipped(core: Core) -> None:
    first = await core.service.submit("reverse", "a", unique_key="k")
    await core.service.cancel(first.id)
    holder = await core.service.submit("reverse", "a", unique_key="k")
    other = await core.service.submit("reverse", "b", unique_key="other")
    await core.service.cancel(other.id)
    outcome = await core.service.retry_matching(TaskQuery(status=TaskStatus.CANCELLED))
    assert outcome == BulkOutcome(matched=2, changed=1, resume_before=None)
    assert (
        statuses(core, [first.id, holder.id, other.id]) == [TaskStatus.CANCELLED] + [TaskStatus.PENDING] * 2
    )


def test_the_http_status_choices_are_the_ones_the_rules_accept() -> None:
    assert {status.value for status in CancellableStatus} == {status.value for status in CANCELLABLE}
    assert {status.value for status in RetryableStatus} == {status.value for status in RETRYABLE}


async def test_without_a_finder_the_bulk_actions_are_refused(core: Core) -> None:
    bare = TaskService(
        tasks=core.tasks, transitions=core.transitions, registry=core.registry, clock=core.clock
    )
    with pytest.raises(ConfigurationError):
        await bare.cancel_matching(TaskQuery(type="reverse"))
    assert (await bare.submit("reverse", "still works")).status is TaskStatus.PENDING


# -- over HTTP ------------------------------------------------------------------------


@pytest.fixture
def stopped() -> list[float]:
    return []


@pytest.fixture
def container(stopped: list[float]) -> Container:
    settings = load_settings({}, lease_s=3, retry_base_s=0.01, retry_cap_s=0.02)
    return on_loop_time(build_container(settings, bulk_registry(stopped)))


@pytest.fixture
def app(container: Container) -> Litestar:
    return create_app(container, embedded_worker=True)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[Client]:
    async with serving(app) as client:
        yield client


@pytest.mark.looptime
async def test_over_http_running_and_waiting_tasks_are_cancelled_and_a_repeat_changes_nothing(
    client: Client, stopped: list[float]
) -> None:
    running = [
        (await client.post("/tasks/", json={"type": "sleepy", "input_data": 600})).json() for _ in range(3)
    ]
    for task in running:
        await wait_for_status(client, task["id"], "PROCESSING")
    later = [
        (await client.post("/tasks/", json={"type": "sleepy", "input_data": 1, "delay_s": 3600})).json()
        for _ in range(2)
    ]
    done = (await client.post("/tasks/", json={"input_data": "abc"})).json()
    await wait_for_status(client, done["id"], "COMPLETED")

    cancelled_at = asyncio.get_running_loop().time()
    cancelled = await client.post("/tasks/cancel", json={"type": "sleepy"})
    assert cancelled.status_code == 200
    assert cancelled.json() == {"matched": 5, "changed": 5, "next_cursor": None}
    again = await client.post("/tasks/cancel", json={"type": "sleepy"})
    assert again.json() == {"matched": 0, "changed": 0, "next_cursor": None}
    for task in [*running, *later]:
        read = (await client.get(f"/tasks/{task['id']}")).json()
        assert (read["status"], read["result"]) == ("CANCELLED", None)
    # The worker stops the running handlers at their next heartbeat (every third
    # of the 3 s lease) and discards what they would return: the tasks stay CANCELLED.
    await eventually(lambda: len(stopped) == 3, within=5)
    assert max(stopped) - cancelled_at <= 1.5
    for task in running:
        final = (await client.get(f"/tasks/{task['id']}")).json()
        assert (final["status"], final["result"]) == ("CANCELLED", None)


@pytest.mark.looptime
async def test_over_http_failed_tasks_are_retried_and_run_again(client: Client) -> None:
    ids = [
        (await client.post("/tasks/", json={"type": "explode", "input_data": "x"})).json()["id"]
        for _ in range(4)
    ]
    for task_id in ids:
        await wait_for_status(client, task_id, "FAILED")
    retried = await client.post("/tasks/retry", json={"status": "FAILED", "type": "explode"})
    assert retried.json() == {"matched": 4, "changed": 4, "next_cursor": None}
    for task_id in ids:
        failed_again = await wait_for_status(client, task_id, "FAILED")
        assert (failed_again["attempts"], failed_again["error"]) == (1, "RuntimeError: handler bug")


@pytest.mark.looptime
async def test_over_http_a_limit_gives_a_cursor_to_go_on_with(client: Client) -> None:
    ids = [
        (await client.post("/tasks/", json={"input_data": f"t{n}", "delay_s": 60})).json()["id"]
        for n in range(5)
    ]
    seen: list[dict[str, object]] = []
    body: dict[str, object] = {"type": "reverse", "limit": 2}
    while True:
        answer = (await client.post("/tasks/cancel", json=body)).json()
        seen.append(answer)
        if answer["next_cursor"] is None:
            break
        body["cursor"] = answer["next_cursor"]
    assert [(a["matched"], a["changed"]) for a in seen] == [(2, 2), (2, 2), (1, 1)]
    for task_id in ids:
        assert (await client.get(f"/tasks/{task_id}")).json()["status"] == "CANCELLED"


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        ("/tasks/cancel", {}, "give at least one filter"),
        ("/tasks/cancel", {"limit": 5}, "give at least one filter"),
        ("/tasks/cancel", {"status": "COMPLETED"}, None),  # the schema lists what each action applies to
        ("/tasks/retry", {"status": "PENDING"}, None),
        ("/tasks/cancel", {"created_before": 0}, "got `int` - at `$.created_before`"),  # decoded strictly
        ("/tasks/cancel", {"type": "reverse", "limit": "5"}, "got `str` - at `$.limit`"),
        ("/tasks/retry", {"status": "NOPE"}, None),
        ("/tasks/cancel", {"type": "reverse", "limit": 0}, None),
        ("/tasks/cancel", {"type": "reverse", "limit": 10_001}, None),
        ("/tasks/cancel", {"type": "reverse", "surprise": 1}, None),
        ("/tasks/cancel", {"created_after": "2026-01-01T00:00:00"}, None),  # no offset
        ("/tasks/cancel", {"type": "reverse", "cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        ("/tasks/retry", [], None),
    ],
)
async def test_over_http_a_bad_filter_is_422(
    client: Client, path: str, body: object, detail: str | None
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if detail:
        assert detail in response.json()["detail"]


@pytest.mark.looptime
async def test_over_http_the_operations_are_documented(client: Client) -> None:
    schema = (await client.get("/docs/openapi.json")).json()
    for path, operation_id in [("/tasks/cancel", "cancelTasks"), ("/tasks/retry", "retryTasks")]:
        post = schema["paths"][path]["post"]
        assert post["operationId"] == operation_id
        assert {"200", "403", "422", "503"} <= set(post["responses"])
    components = schema["components"]["schemas"]
    for name, statuses in [("CancelFilter", "CancellableStatus"), ("RetryFilter", "RetryableStatus")]:
        body = components[name]["properties"]
        fields = {
            "status",
            "type",
            "queue",
            "tags",
            "created_after",
            "created_before",
            "owner",
            "limit",
            "cursor",
        }
        assert set(body) == fields
        assert body["status"]["oneOf"][0] == {"$ref": f"#/components/schemas/{statuses}"}
    assert components["CancellableStatus"]["enum"] == ["PENDING", "PROCESSING"]
    assert components["RetryableStatus"]["enum"] == ["FAILED", "CANCELLED"]
    assert set(schema["components"]["schemas"]["BulkResult"]["properties"]) == {
        "matched",
        "changed",
        "next_cursor",
    }


@pytest.mark.looptime
async def test_over_http_a_database_outage_is_503(container: Container, client: Client) -> None:
    await client.post("/tasks/", json={"input_data": "x", "delay_s": 60})
    database = container.database()
    assert isinstance(database, MemoryDatabase)
    database.available = False
    response = await client.post("/tasks/cancel", json={"type": "reverse"})
    assert (response.status_code, response.headers["retry-after"]) == (503, "5")
    database.available = True
    assert (await client.post("/tasks/cancel", json={"type": "reverse"})).json()["changed"] == 1
