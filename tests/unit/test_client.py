"""``taskcore.client.AsyncClient`` against the real app, in the test's event loop on fake time.

Every method goes to ``create_app`` on the memory adapters through
``httpx.ASGITransport``; ``client_support.Faults`` adds what the app cannot
do by itself (refused connections, answers lost after it acted, proxies'
errors). Under looptime the client's backoff, ``Retry-After`` waits and long
polls pass in fake time, so the retry tests take milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from datetime import datetime, timedelta

import httpx
import msgspec
import pytest
from dependency_injector import providers
from litestar import Litestar

from taskcore.adapters.memory import MemoryDatabase
from taskcore.client import (
    AsyncClient,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    RateLimited,
    Retries,
    ServerError,
    Step,
    TaskSpec,
    TaskStatus,
    TransportError,
    Unauthorized,
    Unavailable,
    Unprocessable,
    WebhookDelivery,
)
from taskcore.entrypoints.container import Container
from taskcore.entrypoints.http import create_app

from .client_support import BASE_URL, SECRET, Faults, FlakyAsync, make_container, running, to, token
from .test_http import eventually, loop_time, on_loop_time
from .test_webhooks import CALLBACK_SECRET, Receiver

pytestmark = pytest.mark.looptime

QUICK = Retries(attempts=4, backoff_s=0.1, max_backoff_s=1.0, total_s=30.0)


@pytest.fixture
def container() -> Container:
    return on_loop_time(
        make_container(max_body_bytes=4096, retry_base_s=0.01, retry_cap_s=0.02, shutdown_grace_s=1)
    )


@pytest.fixture
def app(container: Container) -> Litestar:
    return create_app(container, embedded_worker=True)


@pytest.fixture
def faults() -> Faults:
    return Faults()


@asynccontextmanager
async def connect(app: Litestar, faults: Faults) -> AsyncIterator[AsyncClient]:
    """A client of ``app`` through ``faults``, the app running for the block.

    Entered in each test, not in a fixture: under looptime a fixture's waits
    (the worker's shutdown among them) would be on real time.
    """
    async with running(app) as transport:
        flaky = FlakyAsync(transport, faults)
        async with AsyncClient(BASE_URL, transport=flaky, retries=QUICK) as made:
            yield made


def database(container: Container) -> MemoryDatabase:
    db = container.database()
    assert isinstance(db, MemoryDatabase)
    return db


# -- tasks ----------------------------------------------------------------------------------


async def test_submit_wait_and_get_return_typed_tasks(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        submitted = await client.submit("reverse", "hello", priority=3, queue="urgent")
        assert submitted.status is TaskStatus.PENDING
        assert (submitted.priority, submitted.queue, submitted.result) == (3, "urgent", None)
        assert isinstance(submitted.created_at, datetime)
        done = await client.wait(submitted.id)
        assert done.status is TaskStatus.COMPLETED
        assert done.is_final
        assert done.result == "olleh"
        assert done.result_as(str) == "olleh"
        assert await client.get(submitted.id) == done


async def test_every_submit_carries_its_own_idempotency_key(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        first = await client.submit("reverse", "a")
        second = await client.submit("reverse", "a")
        assert first.id != second.id
        keys = [request.headers["idempotency-key"] for request in faults.requests]
        assert len(set(keys)) == 2
        again = await client.submit_detailed("reverse", "a", idempotency_key=keys[0])
        assert (again.task.id, again.replayed, again.created) == (first.id, True, True)


async def test_schedules_after_and_unique_keys(app: Litestar, container: Container, faults: Faults) -> None:
    async with connect(app, faults) as client:
        start = loop_time()
        delayed = await client.submit("reverse", "ab", delay=timedelta(seconds=5))
        at = await client.submit("reverse", "cd", run_at=container.clock().now() + timedelta(seconds=5))
        for task in (delayed, at):
            assert task.run_at - task.created_at >= timedelta(seconds=4.9)
        then = await client.submit("reverse", "ef", after=[delayed.id, at.id])
        assert then.blocked
        assert (await client.wait(then.id)).result == "fe"
        assert loop_time() - start >= 5
        once = await client.submit_detailed("slow", 10.0, unique_key="only-one")
        twice = await client.submit_detailed("slow", 10.0, unique_key="only-one")
        assert (twice.task.id, twice.deduplicated, twice.created) == (once.task.id, True, False)


async def test_wait_returns_the_task_as_it_is_when_the_timeout_passes(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        task = await client.submit("slow", 200.0)
        start = loop_time()
        waited = await client.wait(task.id, timeout=90)
        assert waited.status in (TaskStatus.PENDING, TaskStatus.PROCESSING)
        assert 90 <= loop_time() - start < 91
        assert (await client.wait(task.id, timeout=0)).id == task.id
        assert (await client.wait(task.id)).result == 200.0


async def test_wait_long_polls_rather_than_polling(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        task = await client.submit("slow", 100.0)
        await client.wait(task.id)
        polls = [r for r in faults.requests if r.url.path == f"/tasks/{task.id}"]
        assert [float(r.url.params["wait"]) for r in polls] == [60.0, 60.0]


async def test_events_stream_each_state_then_end(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        task = await client.submit("reverse", "abc")
        states = [event async for event in client.events(task.id)]
        assert [s.status for s in states] == [TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED]
        assert states[-1].result == "cba"
        again = [event async for event in client.events(task.id)]
        assert [s.status for s in again] == [TaskStatus.COMPLETED]


async def test_events_resume_where_a_dropped_stream_stopped(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        task = await client.submit("slow", 1.0)
        events = to("GET", f"/tasks/{task.id}/events")
        faults.add("truncate", when=events).add("lose", when=events)
        async with aclosing(client.events(task.id)) as stream:
            states = [state.status async for state in stream]
        # The ASGI transport hands over a stream whole, when it ends: the lost one had the rest.
        assert states == [TaskStatus.PENDING, TaskStatus.COMPLETED]
        streams = [r for r in faults.requests if events(r)]
        assert len(streams) == 3
        assert "last-event-id" not in streams[0].headers
        # After the first event, a stream that ended, then one whose answer was lost whole.
        assert streams[1].headers["last-event-id"] == streams[2].headers["last-event-id"]
        assert int(streams[2].headers["last-event-id"]) >= 1


async def test_events_of_a_missing_task_raise_not_found(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        with pytest.raises(NotFound):
            [state async for state in client.events(4242)]


async def test_list_iterates_over_every_page_newest_first(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        ids = [(await client.submit("reverse", f"t{i}")).id for i in range(7)]
        failed = await client.submit("explode", "x")
        await client.wait(failed.id)
        listed = [task.id async for task in client.list(type="reverse", page_size=3)]
        assert listed == sorted(ids, reverse=True)
        assert len([r for r in faults.requests if r.url.path == "/tasks"]) == 3
        assert [t.id async for t in client.list(status=TaskStatus.FAILED)] == [failed.id]
        page = await client.list_page(limit=5)
        assert len(page.items) == 5
        assert page.next_cursor
        rest = await client.list_page(limit=5, cursor=page.next_cursor)
        assert [t.id for t in page.items + rest.items] == sorted([*ids, failed.id], reverse=True)
        assert rest.next_cursor is None


async def test_tags_and_metadata_are_sent_returned_and_filter_listings(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        red_big = await client.submit("slow", 100.0, delay=60, tags=["red", "big"], metadata={"order": 7})
        assert (red_big.tags, red_big.metadata) == (("red", "big"), {"order": 7})
        assert (await client.get(red_big.id)).metadata == {"order": 7}
        plain = await client.submit("slow", 100.0, delay=60)
        assert (plain.tags, plain.metadata) == ((), {})
        batch = await client.submit_many([TaskSpec(type="slow", input=100.0, delay=60, tags=["red"])])
        red = batch.items[0]
        assert red.tags == ("red",)
        assert [t.id async for t in client.list(tag="red")] == [red.id, red_big.id]
        assert [t.id async for t in client.list(tag=["red", "big"], type="slow")] == [red_big.id]
        page = await client.list_page(tag="red", limit=1)
        assert [t.id for t in page.items] == [red.id]
        assert [t.id for t in (await client.list_page(tag="red", cursor=page.next_cursor)).items] == [
            red_big.id
        ]
        assert "tag=red&tag=big" in str([r.url for r in faults.requests if r.url.path == "/tasks"][1])
        cancelled = await client.cancel_matching(tags=["big"])
        assert (cancelled.matched, cancelled.changed) == (1, 1)
        flow = await client.workflows.submit(
            [Step(name="a", type="reverse", input="x", tags=["a"], metadata={"who": "a"})],
            tags=["flow"],
            metadata={"who": "flow", "run": 1},
        )
        assert (flow.step("a").tags, flow.step("a").metadata) == (("flow", "a"), {"who": "a", "run": 1})
        states = [state async for state in client.events(flow.step("a").id)]  # the SSE status events
        assert {(state.tags, state.metadata["who"]) for state in states} == {(("flow", "a"), "a")}
        with pytest.raises(Unprocessable) as refused:
            await client.submit("reverse", "x", tags=["not a tag"])
        assert refused.value.status == 422


async def test_cancel_and_retry_and_their_conflicts(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        task = await client.submit("slow", 100.0, delay=50)
        cancelled = await client.cancel(task.id)
        assert cancelled.status is TaskStatus.CANCELLED
        with pytest.raises(Conflict) as conflict:
            await client.cancel(task.id)
        assert conflict.value.status == 409
        assert conflict.value.instance == f"/tasks/{task.id}/cancel"
        retried = await client.retry(task.id)
        assert (retried.status, retried.attempts) == (TaskStatus.PENDING, 0)
        with pytest.raises(Conflict):
            await client.retry(task.id)
        with pytest.raises(NotFound):
            await client.cancel(987_654)


async def test_submit_many_stores_all_or_none(app: Litestar, container: Container, faults: Faults) -> None:
    async with connect(app, faults) as client:
        batch = await client.submit_many(
            [
                TaskSpec(type="reverse", input="one"),
                TaskSpec(type="reverse", input="two", priority=5, unique_key="k"),
                TaskSpec(type="reverse", input="two", unique_key="k"),
            ]
        )
        assert [t.priority for t in batch.items] == [0, 5, 5]
        assert batch.deduplicated == [2]
        assert batch.items[2].id == batch.items[1].id
        stored = len(database(container).tasks)
        with pytest.raises(Unprocessable) as invalid:
            await client.submit_many(
                [TaskSpec(type="reverse", input="ok"), TaskSpec(type="reverse", input=5)]
            )
        assert "items[1]" in (invalid.value.detail or "")
        assert len(database(container).tasks) == stored


async def test_bulk_cancel_and_retry_go_on_until_done(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        ids = [(await client.submit("slow", 100.0, delay=60)).id for _ in range(5)]
        some = await client.cancel_matching(type="slow", limit=2)
        assert (some.matched, some.changed) == (2, 2)
        assert some.next_cursor is not None
        rest = await client.cancel_matching(type="slow", cursor=some.next_cursor)
        assert (rest.matched, rest.changed, rest.next_cursor) == (3, 3, None)
        for task_id in ids:
            assert (await client.get(task_id)).status is TaskStatus.CANCELLED
        again = await client.retry_matching(status=TaskStatus.CANCELLED, type="slow")
        assert (again.matched, again.changed) == (5, 5)
        with pytest.raises(Unprocessable):
            await client.cancel_matching()  # no filter: that would be every task


async def test_bulk_follows_cursors_in_calls_of_at_most_ten_thousand(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        await client.submit("slow", 100.0, delay=60)
        await client.cancel_matching(type="slow", limit=25_000)
        limits = [
            msgspec.json.decode(r.content)["limit"] for r in faults.requests if r.url.path == "/tasks/cancel"
        ]
        assert limits == [10_000]  # the only call found everything: no cursor to follow


# -- workflows, queues, schedules -------------------------------------------------------------


async def test_workflows_submit_read_and_cancel(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        flow = await client.workflows.submit(
            [
                Step(name="a", type="reverse", input="abc"),
                Step(name="b", type="slow", input=100.0, after=["a"]),
                Step(name="c", type="reverse", input="xyz", after=["b"], run_anyway=True),
            ],
            name="chain",
        )
        assert (flow.name, flow.status, len(flow.steps)) == ("chain", "RUNNING", 3)
        assert flow.step("b").after == (flow.step("a").id,)
        assert (await client.wait(flow.step("a").id)).status is TaskStatus.COMPLETED
        cancelled = await client.workflows.cancel(flow.id)
        assert [step.status for step in cancelled.steps] == [
            TaskStatus.COMPLETED,
            TaskStatus.CANCELLED,
            TaskStatus.CANCELLED,  # run_anyway runs after a failed step, not in a cancelled workflow
        ]
        assert (await client.workflows.get(flow.id)).status == "CANCELLED"
        assert (await client.workflows.cancel(flow.id)).status == "CANCELLED"  # safe to repeat
        with pytest.raises(NotFound):
            await client.workflows.get(12345)
        with pytest.raises(Unprocessable):
            await client.workflows.submit([Step(name="a", type="reverse", input="x", after=["nope"])])


async def test_queues_list_pause_and_resume(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        names = {queue.name: queue for queue in await client.queues.list()}
        assert set(names) == {"default", "urgent"}
        assert not names["urgent"].paused
        assert (await client.queues.pause("urgent")).paused
        task = await client.submit("reverse", "waits", queue="urgent")
        await asyncio.sleep(2)
        assert (await client.get(task.id)).status is TaskStatus.PENDING
        assert not (await client.queues.resume("urgent")).paused
        assert (await client.wait(task.id)).status is TaskStatus.COMPLETED
        with pytest.raises(NotFound):
            await client.queues.pause("no-such-queue")


async def test_schedules_create_list_pause_resume_and_delete(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        made = await client.schedules.create("every-minute", "reverse", "tick", every_s=60)
        assert (made.name, made.every_s, made.paused) == ("every-minute", 60, False)
        assert [s.name for s in await client.schedules.list()] == ["every-minute"]
        assert (await client.schedules.pause("every-minute")).paused
        assert not (await client.schedules.resume("every-minute")).paused
        assert (await client.schedules.get("every-minute")).type == "reverse"
        with pytest.raises(Conflict):
            await client.schedules.create("every-minute", "reverse", "tick", every_s=60)
        await client.schedules.delete("every-minute")
        with pytest.raises(NotFound):
            await client.schedules.get("every-minute")


async def test_schedule_methods_send_what_the_schedules_api_takes() -> None:
    """Against a stand-in: the paths, methods and bodies exactly as the client sends them."""
    seen: list[httpx.Request] = []
    view = {"name": "nightly", "type": "report", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path == "/schedules" and request.method == "GET":
            return httpx.Response(200, json={"items": [view]})
        return httpx.Response(201 if request.method == "POST" else 200, json=view)

    async with AsyncClient(BASE_URL, transport=httpx.MockTransport(answer)) as client:
        made = await client.schedules.create(
            "nightly", "report", {"days": 1}, cron="30 2 * * *", timezone="Europe/Berlin", catch_up="latest"
        )
        assert (made.cron, made.timezone, made.every_s) == ("30 2 * * *", "Europe/Berlin", None)
        assert [s.name for s in await client.schedules.list()] == ["nightly"]
        await client.schedules.get("nightly")
        await client.schedules.pause("nightly")
        await client.schedules.resume("nightly")
        await client.schedules.delete("nightly")
    assert [(r.method, r.url.path) for r in seen] == [
        ("POST", "/schedules"),
        ("GET", "/schedules"),
        ("GET", "/schedules/nightly"),
        ("POST", "/schedules/nightly/pause"),
        ("POST", "/schedules/nightly/resume"),
        ("DELETE", "/schedules/nightly"),
    ]
    assert msgspec.json.decode(seen[0].content) == {
        "name": "nightly",
        "type": "report",
        "input_data": {"days": 1},
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "catch_up": "latest",
    }


# -- task detail, progress, webhooks ------------------------------------------------------------


async def test_get_detail_has_the_input_owner_and_attempt_log(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        failed = await client.submit("explode", "boom", metadata={"k": 1})
        await client.wait(failed.id)
        detail = await client.get_detail(failed.id)
        assert (detail.id, detail.status, detail.input, detail.metadata) == (
            failed.id,
            TaskStatus.FAILED,
            "boom",
            {"k": 1},
        )
        assert detail.owner == "anonymous"  # auth is off
        assert detail.started_at is not None
        assert detail.lease_until is None  # not PROCESSING
        [attempt] = detail.attempt_log
        assert (attempt.number, attempt.outcome) == (1, "FAILED")
        assert "handler bug" in (attempt.error or "")
        assert attempt.ended_at is not None
        assert [r.url.path for r in faults.requests][-1] == f"/tasks/{failed.id}/detail"
        with pytest.raises(NotFound):
            await client.get_detail(424242)


async def test_events_merge_each_progress_report_into_the_task(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        task = await client.submit("report", 3)
        assert (task.progress, task.progress_message) == (None, None)
        states = [state async for state in client.events(task.id)]
        reports = [(s.progress, s.progress_message) for s in states if s.status is TaskStatus.PROCESSING]
        assert reports == [(None, None), (0.25, "step 1"), (0.5, "step 2"), (0.75, "step 3")]
        assert all(s.type == "report" and s.id == task.id for s in states)  # the whole task each time
        assert [s.progress_at is not None for s in states[-4:]] == [True] * 4
        done = states[-1]
        assert (done.status, done.result, done.progress, done.progress_message) == (
            TaskStatus.COMPLETED,
            3,
            1.0,
            "step 3",
        )
        assert done == await client.get(task.id)
        again = await client.submit("report", 3)
        statuses = [s.status async for s in client.events(again.id, progress=False)]
        assert statuses == [TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED]


async def test_a_stream_resumed_after_a_progress_event_goes_on_from_it(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        task = await client.submit("report", 2)
        await asyncio.sleep(1.7)  # running, its first report stored
        events = to("GET", f"/tasks/{task.id}/events")
        faults.add("truncate", when=events)  # the stream ends after its first (status) event
        states = [s async for s in client.events(task.id)]
        assert states[-1].status is TaskStatus.COMPLETED
        streams = [r for r in faults.requests if events(r)]
        assert len(streams) == 2
        assert int(streams[1].headers["last-event-id"]) >= 1


def webhooks_app(receiver: Receiver, **settings: object) -> Litestar:
    """The app with deliveries posted to ``receiver`` instead of the network."""
    container = on_loop_time(make_container(webhook_retry_base_s=0.1, **settings))
    container.webhook_poster.override(providers.Object(receiver))
    return create_app(container, embedded_worker=True)


async def test_webhooks_callbacks_deliveries_and_their_retry() -> None:
    receiver, faults = Receiver(), Faults()
    app = webhooks_app(
        receiver, webhook_secret=CALLBACK_SECRET, webhook_allow_private=True, webhook_retry_window_s=1
    )
    async with connect(app, faults) as client:
        hook = await client.webhooks.create(
            "http://127.0.0.1:9/in", events=["task.failed"], description="failures"
        )
        assert hook.secret.startswith("whsec_")
        assert (hook.url, hook.events, hook.description) == (
            "http://127.0.0.1:9/in",
            ("task.failed",),
            "failures",
        )
        [listed] = await client.webhooks.list()
        assert (listed.id, listed.url, listed.events, listed.created_at) == (
            hook.id,
            hook.url,
            hook.events,
            hook.created_at,
        )
        assert not hasattr(listed, "secret")  # shown only on creation
        ok = await client.submit("reverse", "abc", callback_url="http://127.0.0.1:9/cb")
        assert ok.callback_url == "http://127.0.0.1:9/cb"
        assert (await client.get(ok.id)).callback_url == ok.callback_url
        [batched] = (
            await client.submit_many(
                [TaskSpec(type="reverse", input="d", callback_url="http://127.0.0.1:9/b")]
            )
        ).items
        assert batched.callback_url == "http://127.0.0.1:9/b"
        bad = await client.submit("explode", "x")
        await eventually(lambda: len(receiver.received) == 3, within=60)

        delivered = [d async for d in client.webhooks.deliveries(page_size=2)]
        assert [d.status for d in delivered] == ["DELIVERED"] * 3
        assert [d.id for d in delivered] == sorted((d.id for d in delivered), reverse=True)
        pages = [r for r in faults.requests if r.url.path == "/webhooks/deliveries"]
        assert [r.url.params.get("before") for r in pages] == [None, str(delivered[1].id)]
        [callback] = [d async for d in client.webhooks.deliveries(task_id=ok.id)]
        assert (callback.endpoint_id, callback.url, callback.event) == (
            None,
            ok.callback_url,
            "task.completed",
        )
        [failure] = [d async for d in client.webhooks.deliveries(endpoint_id=hook.id)]
        assert (failure.task_id, failure.event, failure.attempts) == (bad.id, "task.failed", 1)
        page = await client.webhooks.deliveries_page(limit=1)
        assert ([d.id for d in page.items], page.next_before) == ([delivered[0].id], delivered[0].id)
        assert [d async for d in client.webhooks.deliveries(status="FAILED")] == []
        with pytest.raises(NotFound):
            await client.webhooks.retry_delivery(callback.id)  # only a FAILED one

        receiver.status = 410
        gone = await client.submit("reverse", "e", callback_url="http://127.0.0.1:9/gone")
        await client.wait(gone.id)
        failed: list[WebhookDelivery] = []
        while not failed:
            await asyncio.sleep(0.5)
            failed = [d async for d in client.webhooks.deliveries(status="FAILED")]
        assert (failed[0].task_id, failed[0].last_status) == (gone.id, 410)
        assert failed[0].last_error == "the receiver answered HTTP 410"
        receiver.status = 200
        again = await client.webhooks.retry_delivery(failed[0].id)
        assert (again.id, again.status, again.message_id) == (failed[0].id, "PENDING", failed[0].message_id)
        await eventually(lambda: receiver.received[-1][0].message_id == failed[0].message_id, within=60)

        await client.webhooks.delete(hook.id)
        assert await client.webhooks.list() == []
        with pytest.raises(NotFound):
            await client.webhooks.delete(hook.id)


async def test_webhook_refusals_raise_unprocessable() -> None:
    app = webhooks_app(Receiver(), webhook_secret=CALLBACK_SECRET)
    async with connect(app, Faults()) as client:
        for private in ("http://127.0.0.1:9/in", "http://10.0.0.1/", "http://169.254.169.254/"):
            with pytest.raises(Unprocessable) as refused:
                await client.webhooks.create(private)
            assert "not a public address" in (refused.value.detail or "")
            with pytest.raises(Unprocessable):
                await client.submit("reverse", "a", callback_url=private)
            with pytest.raises(Unprocessable):
                await client.submit_many([TaskSpec(type="reverse", input="a", callback_url=private)])
        with pytest.raises(Unprocessable):
            await client.webhooks.create("https://hooks.example.com/", events=["task.started"])
        mine = await client.webhooks.create("https://hooks.example.com/", secret=CALLBACK_SECRET)
        assert mine.secret == CALLBACK_SECRET
        assert (await client.submit("reverse", "a", callback_url="https://hooks.example.com/cb")).callback_url
        assert [t.callback_url async for t in client.list()] == ["https://hooks.example.com/cb"]
    async with connect(webhooks_app(Receiver()), Faults()) as unsigned:
        with pytest.raises(Unprocessable):  # no TASKCORE_WEBHOOK_SECRET to sign callbacks with
            await unsigned.submit("reverse", "a", callback_url="https://hooks.example.com/cb")


async def test_webhook_methods_resend_only_what_is_safe(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        made = to("POST", "/webhooks")
        faults.add("refuse", when=made)
        first = await client.webhooks.create("https://hooks.example.com/a")  # never reached: resent
        faults.add("lose", when=made)
        with pytest.raises(TransportError):
            await client.webhooks.create("https://hooks.example.com/b")
        listed = await client.webhooks.list()
        assert [h.url for h in listed] == ["https://hooks.example.com/a", "https://hooks.example.com/b"]
        faults.add("lose", when=to("GET", "/webhooks"))
        assert len(await client.webhooks.list()) == 2
        faults.add("lose", when=to("DELETE", f"/webhooks/{first.id}"))
        await client.webhooks.delete(first.id)  # the resend's 404 is the first attempt's doing
        assert [h.url for h in await client.webhooks.list()] == ["https://hooks.example.com/b"]
        faults.add("lose", when=to("GET", "/webhooks/deliveries"))
        assert (await client.webhooks.deliveries_page()).items == []
        faults.add("lose", when=to("POST", "/webhooks/deliveries/7/retry"))
        with pytest.raises(TransportError):
            await client.webhooks.retry_delivery(7)


# -- problems ---------------------------------------------------------------------------------


async def test_problems_raise_by_status_with_their_rfc_9457_fields(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        with pytest.raises(NotFound) as missing:
            await client.get(424242)
        problem = missing.value
        assert (problem.status, problem.title, problem.type) == (404, "Not Found", "about:blank")
        assert problem.instance == "/tasks/424242"
        assert problem.detail
        assert "424242" in problem.detail
        assert problem.request_id
        assert len(problem.request_id) >= 16
        assert problem.attempts == 1
        assert "404 Not Found" in str(problem)
        assert problem.request_id in str(problem)
        with pytest.raises(Unprocessable) as invalid:
            await client.submit("reverse", 5)
        assert invalid.value.status == 422
        with pytest.raises(Unprocessable) as schema:
            await client.submit("reverse", "x", priority=99)
        assert schema.value.errors
        with pytest.raises(PayloadTooLarge):
            await client.submit("reverse", "x" * 5000)
        with pytest.raises(ProblemError) as not_a_number:
            await client.list_page(limit=0)
        assert not_a_number.value.status == 422


async def test_a_proxy_page_is_a_problem_too(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        faults.add("502", times=10, when=to("POST", "/tasks/1/retry"))
        with pytest.raises(ServerError) as bad_gateway:
            await client.retry(1)
        assert (bad_gateway.value.status, bad_gateway.value.title) == (502, "Bad Gateway")
        assert bad_gateway.value.attempts == 1  # a retry may have been acted on: not sent again


async def test_a_database_outage_is_waited_out_as_retry_after_says(
    app: Litestar, container: Container, faults: Faults
) -> None:
    async with connect(app, faults) as client:
        db = database(container)
        db.available = False
        asyncio.get_running_loop().call_later(3, setattr, db, "available", True)
        start = loop_time()
        task = await client.submit("reverse", "later")
        assert loop_time() - start >= 5  # the API's Retry-After: 5, not the 0.1 s backoff
        assert len(db.tasks) == 1
        assert (await client.wait(task.id)).result == "retal"


async def test_an_outage_longer_than_the_budget_raises_unavailable(
    app: Litestar, container: Container, faults: Faults
) -> None:
    async with connect(app, faults) as client:
        database(container).available = False
        start = loop_time()
        with pytest.raises(Unavailable) as unavailable:
            await client.get(1)
        assert unavailable.value.retry_after == 5
        assert unavailable.value.attempts == 4
        assert 15 <= loop_time() - start <= 30


# -- retries ----------------------------------------------------------------------------------


async def test_a_submit_whose_answer_is_lost_is_sent_again_and_makes_one_task(
    app: Litestar, container: Container, faults: Faults
) -> None:
    async with connect(app, faults) as client:
        faults.add("lose", when=to("POST", "/tasks/")).add("reset", when=to("POST", "/tasks/"))
        submitted = await client.submit_detailed("reverse", "once")
        assert faults.injected == ["lose", "reset"]
        assert len(database(container).tasks) == 1
        assert (submitted.task.id, submitted.replayed) == (1, True)
        posts = [r for r in faults.requests if r.method == "POST"]
        assert len(posts) == 3
        assert len({r.headers["idempotency-key"] for r in posts}) == 1
        assert len({r.content for r in posts}) == 1


async def test_refused_connections_and_busy_proxies_are_retried_with_backoff(
    app: Litestar, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(app, faults) as client:
        faults.add("refuse").add("503").add("429")
        start = loop_time()
        with caplog.at_level(logging.WARNING, logger="taskcore.client"):
            task = await client.submit("reverse", "eventually")
        assert faults.injected == ["refuse", "503", "429"]
        assert task.id == 1
        assert loop_time() - start >= 0.05 + 2 + 2  # a backoff, then Retry-After: 2 twice
        logged = [record.getMessage() for record in caplog.records]
        assert logged[0].startswith("POST /tasks/: ConnectError: connection refused; attempt 2 of 4 in 0.")
        assert logged[1].startswith("POST /tasks/: 503 Service Unavailable; attempt 3 of 4 in 2.")
        assert logged[2].startswith("POST /tasks/: 429 Too Many Requests; attempt 4 of 4 in 2.")


async def test_the_retry_budget_ends_in_a_transport_error(app: Litestar, faults: Faults) -> None:
    async with connect(app, faults) as client:
        faults.add("refuse", times=10)
        with pytest.raises(TransportError) as failed:
            await client.get(1)
        assert failed.value.attempts == 4
        assert isinstance(failed.value.__cause__, httpx.ConnectError)
        assert "GET /tasks/1" in str(failed.value)


async def test_only_requests_safe_to_repeat_are_sent_after_a_lost_answer(
    app: Litestar, container: Container, faults: Faults
) -> None:
    async with connect(app, faults) as client:
        faults.add("lose", when=to("POST", "/tasks/batch"))
        with pytest.raises(TransportError) as lost:
            await client.submit_many([TaskSpec(type="reverse", input="x")])
        assert lost.value.attempts == 1
        assert "may have been acted on" in str(lost.value)
        assert len(database(container).tasks) == 1  # it was: resending would have made two
        faults.add("refuse", when=to("POST", "/tasks/batch"))
        await client.submit_many([TaskSpec(type="reverse", input="y")])  # refused: surely not acted on
        assert len(database(container).tasks) == 2
        failed = await client.submit("explode", "x")
        await client.wait(failed.id)
        faults.add("lose", when=to("POST", f"/tasks/{failed.id}/retry"))
        with pytest.raises(TransportError):
            await client.retry(failed.id)
        faults.add("lose", when=to("GET", "/tasks/1")).add("502", when=to("GET", "/tasks/1"))
        assert (await client.get(1)).id == 1  # a GET is always safe to repeat


async def test_a_cancel_resent_after_a_lost_answer_returns_the_cancelled_task(
    app: Litestar, faults: Faults
) -> None:
    async with connect(app, faults) as client:
        task = await client.submit("slow", 100.0, delay=60)
        faults.add("lose", when=to("POST", f"/tasks/{task.id}/cancel"))
        cancelled = await client.cancel(task.id)  # the resend's answer is a 409: the first one did it
        assert cancelled.status is TaskStatus.CANCELLED
        assert faults.injected == ["lose"]


async def test_retries_off(app: Litestar, faults: Faults) -> None:
    faults.add("503")
    async with running(app) as transport:
        client = AsyncClient(BASE_URL, transport=FlakyAsync(transport, faults), retries=Retries(attempts=1))
        async with client:
            with pytest.raises(Unavailable) as unavailable:
                await client.get(1)
    assert unavailable.value.retry_after == 2


async def test_rate_limited_beyond_the_budget_raises_at_once() -> None:
    limited = on_loop_time(make_container(rate_limit_submit_per_minute=1))
    app = create_app(limited, embedded_worker=True)
    async with running(app) as transport, AsyncClient(BASE_URL, transport=transport) as client:
        await client.submit("reverse", "one")
        start = loop_time()
        with pytest.raises(RateLimited) as limited_error:
            await client.submit("reverse", "two")
    assert limited_error.value.retry_after == 60
    assert limited_error.value.attempts == 1
    assert loop_time() - start < 1  # 60 s is past the 60 s budget: not waited for


# -- auth -------------------------------------------------------------------------------------


@pytest.fixture
def secured() -> Litestar:
    container = on_loop_time(make_container(jwt_secret=SECRET))
    return create_app(container, embedded_worker=True, default_auth="jwt")


async def test_bearer_tokens_fixed_rotating_and_async(secured: Litestar) -> None:
    issued: list[str] = []

    def rotating() -> str:
        issued.append(token())
        return issued[-1]

    async def fetched() -> str:
        await asyncio.sleep(0.01)
        return token("bob")

    faults = Faults()
    async with running(secured) as transport:
        flaky = FlakyAsync(transport, faults)
        alice = token()
        async with AsyncClient(BASE_URL, transport=flaky, token=alice, retries=QUICK) as fixed:
            task = await fixed.submit("reverse", "mine")
        assert faults.requests[-1].headers["authorization"] == f"Bearer {alice}"
        async with AsyncClient(BASE_URL, transport=flaky, token=rotating, retries=QUICK) as rotated:
            faults.add("refuse")
            assert (await rotated.get(task.id)).id == task.id
        assert len(issued) == 2  # asked again for the retry
        async with AsyncClient(BASE_URL, transport=flaky, token=fetched) as bob:
            with pytest.raises(NotFound):
                await bob.get(task.id)  # alice's task: another owner's id is a 404
        async with AsyncClient(BASE_URL, transport=flaky) as anonymous:
            with pytest.raises(Unauthorized) as unauthorized:
                await anonymous.get(task.id)
        async with AsyncClient(BASE_URL, transport=flaky, token=token(scope="tasks:read")) as reader:
            with pytest.raises(Forbidden):
                await reader.submit("reverse", "no")
            with pytest.raises(Forbidden):
                await reader.queues.list()
    assert unauthorized.value.detail == "a bearer token is required"


async def test_the_token_and_url_come_from_the_environment(
    secured: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKCORE_URL", BASE_URL + "/")
    monkeypatch.setenv("TASKCORE_TOKEN", token())
    faults = Faults()
    async with running(secured) as transport, AsyncClient(transport=FlakyAsync(transport, faults)) as client:
        await client.submit("reverse", "env")
    assert str(faults.requests[0].url) == BASE_URL + "/tasks/"
    assert faults.requests[0].headers["user-agent"].startswith("taskcore-client/")


async def test_owners_list_their_own_and_admins_anyones(secured: Litestar) -> None:
    faults = Faults()
    admin_token = token("ops", scope="tasks:read tasks:write tasks:admin")
    async with running(secured) as transport:
        flaky = FlakyAsync(transport, faults)
        async with (
            AsyncClient(BASE_URL, transport=flaky, token=token("alice")) as alice,
            AsyncClient(BASE_URL, transport=flaky, token=token("bob")) as bob,
            AsyncClient(BASE_URL, transport=flaky, token=admin_token) as admin,
        ):
            mine = await alice.submit("slow", 100.0, delay=60)
            theirs = await bob.submit("slow", 100.0, delay=60)
            assert [t.id async for t in admin.list(owner="alice")] == [mine.id]
            assert [t.id for t in (await admin.list_page(owner="bob")).items] == [theirs.id]
            assert [t.id async for t in admin.list()] == [theirs.id, mine.id]
            assert [t.id async for t in alice.list(owner="alice")] == [mine.id]
            with pytest.raises(Forbidden):
                await bob.list_page(owner="alice")
            assert (await admin.get_detail(mine.id)).owner == "alice"
            assert (await alice.get_detail(mine.id)).input == 100.0
            with pytest.raises(NotFound):
                await bob.get_detail(mine.id)

            hook = await alice.webhooks.create("https://a.example.com/")
            await bob.webhooks.create("https://b.example.com/")
            assert [h.url for h in await alice.webhooks.list()] == ["https://a.example.com/"]
            assert len(await admin.webhooks.list()) == 2
            with pytest.raises(NotFound):
                await bob.webhooks.delete(hook.id)  # another owner's: as if there were none
            await alice.webhooks.delete(hook.id)
            assert await alice.webhooks.list() == []
        async with AsyncClient(BASE_URL, transport=flaky, token=token("alice", scope="tasks:read")) as reader:
            with pytest.raises(Forbidden):
                await reader.webhooks.create("https://a.example.com/")
            assert [d async for d in reader.webhooks.deliveries()] == []
