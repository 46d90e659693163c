"""The webhook sender on the memory adapters, on fake loop time (``looptime``).

The receiver here is a poster that answers as a test tells it (a status, a
refusal, an unreachable host, a hang): what the sender does with each answer
is the unit under test. The real HTTP, signatures and address checks are
tested against real sockets (``tests/integration/webhooks/``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec
import pytest

from taskcore import TaskStatus, Worker
from taskcore.adapters.memory import MemoryTelemetry, MemoryWebhooks
from taskcore.errors import ServiceUnavailable
from taskcore.model.webhooks import (
    DeliveryQuery,
    DeliveryRetries,
    DeliveryStatus,
    WebhookDelivery,
    WebhookRefused,
)
from taskcore.webhooks import WebhookAdmin, WebhookSender
from tests.core import Core, LoopClock, build_core

pytestmark = pytest.mark.looptime

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CALLBACK_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


class Receiver:
    """Answers each post with what ``answer`` gives (a status, or an exception to raise)."""

    def __init__(self, answer: Callable[[WebhookDelivery], int | Exception] = lambda _: 200) -> None:
        self.answer = answer
        self.posts: list[tuple[WebhookDelivery, str, float]] = []
        self.hang = asyncio.Event()
        self.hanging = False

    async def post(self, delivery: WebhookDelivery, secret: str, at: datetime) -> int:
        self.posts.append((delivery, secret, asyncio.get_running_loop().time()))
        if self.hanging:
            await self.hang.wait()
        answer = self.answer(delivery)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def core() -> Core:
    return build_core(clock=LoopClock())


def sender_of(core: Core, receiver: Receiver, **options: object) -> WebhookSender:
    settings: dict[str, object] = {
        "retries": DeliveryRetries(base_s=1, cap_s=60, window_s=600),
        "callback_secret": CALLBACK_SECRET,
        "timeout_s": 10,
        "poll_s": 0.5,
        "rand": lambda: 1.0,  # the full backoff, so the times are exact
    }
    settings.update(options)
    return WebhookSender(
        outbox=MemoryWebhooks(core.db),
        poster=receiver,
        clock=core.clock,
        **settings,  # type: ignore[arg-type]
    )


async def finish(core: Core, task_input: str = "abc", **submit: object) -> int:
    """A task submitted and run to the end by the processor; its id."""
    task = await core.service.submit("reverse", task_input, **submit)  # type: ignore[arg-type]
    async with core.queue.consume(prefetch=1) as consumer:
        await core.processor.process(await consumer.next())
    assert core.db.tasks[task.id].status is TaskStatus.COMPLETED
    return task.id


def deliveries(core: Core) -> list[WebhookDelivery]:
    return sorted(core.db.webhook_deliveries.values(), key=lambda d: d.id)


async def eventually(check: Callable[[], bool], within: float = 3600) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_completed_tasks_callback_and_endpoint_are_posted_once_each(core: Core) -> None:
    admin = WebhookAdmin(endpoints=MemoryWebhooks(core.db), reads=MemoryWebhooks(core.db), clock=core.clock)
    hook = await admin.register("https://hooks.example.com/in", ["task.completed"], secret=SECRET)
    task_id = await finish(core, callback_url="https://cb.example.com/done")
    receiver = Receiver()

    assert await sender_of(core, receiver).send_due() == 2
    posted = {(d.url, secret) for d, secret, _ in receiver.posts}
    assert posted == {("https://cb.example.com/done", CALLBACK_SECRET), (hook.url, SECRET)}
    assert all(d.payload["data"]["id"] == task_id for d, _, _ in receiver.posts)
    assert {d.status for d in deliveries(core)} == {DeliveryStatus.DELIVERED}
    assert await sender_of(core, receiver).send_due() == 0  # nothing is sent twice


async def test_a_failing_receiver_is_retried_with_backoff_until_the_window_closes(core: Core) -> None:
    """503s: attempts 1 s, 4 s, 16 s, 60 s (the cap), ... apart, the same
    message id each time, until the next would fall past the 600 s window:
    then FAILED, with the last answer, and counted."""
    await finish(core, callback_url="https://cb.example.com/down")
    receiver = Receiver(lambda _: 503)
    telemetry = MemoryTelemetry()
    stop = asyncio.Event()
    running = asyncio.create_task(sender_of(core, receiver, telemetry=telemetry).run(stop))
    await eventually(lambda: deliveries(core)[0].status is DeliveryStatus.FAILED)
    stop.set()
    await running

    times = [at for _, _, at in receiver.posts]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
    assert gaps[:4] == [1.0, 4.0, 16.0, 60.0]
    assert set(gaps[4:]) <= {60.0, 60.5}  # the cap (and the poll's half second)
    assert times[-1] - times[0] <= 600
    assert {d.message_id for d, _, _ in receiver.posts} == {"msg_1"}
    (failed,) = deliveries(core)
    assert (failed.attempts, failed.last_status, failed.last_error) == (
        len(receiver.posts),
        503,
        "the receiver answered HTTP 503",
    )
    assert telemetry.webhook_attempts == {"retried": len(receiver.posts) - 1, "failed": 1}


async def test_an_outage_ends_and_the_delivery_arrives(core: Core) -> None:
    await finish(core, callback_url="https://cb.example.com/flaky")
    loop = asyncio.get_running_loop()
    back_at = loop.time() + 30
    receiver = Receiver(
        lambda _: ServiceUnavailable("connection refused") if loop.time() < back_at else 204  # type: ignore[arg-type]
    )
    stop = asyncio.Event()
    running = asyncio.create_task(sender_of(core, receiver).run(stop))
    await eventually(lambda: deliveries(core)[0].status is DeliveryStatus.DELIVERED)
    stop.set()
    await running
    (delivered,) = deliveries(core)
    assert delivered.attempts == len(receiver.posts) >= 4
    assert delivered.last_status == 204
    assert delivered.last_error is None


async def test_a_refused_receiver_fails_at_once(core: Core) -> None:
    await finish(core, callback_url="https://internal.example.com/")
    receiver = Receiver(lambda _: WebhookRefused("internal.example.com resolves to 10.0.0.5"))
    await sender_of(core, receiver).send_due()
    (failed,) = deliveries(core)
    assert (failed.status, failed.attempts, failed.last_error) == (
        DeliveryStatus.FAILED,
        1,
        "internal.example.com resolves to 10.0.0.5",
    )


async def test_without_a_callback_secret_a_callback_fails_visibly(core: Core) -> None:
    await finish(core, callback_url="https://cb.example.com/x")
    receiver = Receiver()
    await sender_of(core, receiver, callback_secret=None).send_due()
    assert receiver.posts == []
    assert deliveries(core)[0].last_error == "no TASKCORE_WEBHOOK_SECRET to sign it with"


async def test_a_hanging_receiver_never_holds_up_tasks(core: Core) -> None:
    """The sender runs beside the worker's consume loop: while every webhook
    hangs, tasks keep running to the end."""
    admin = WebhookAdmin(endpoints=MemoryWebhooks(core.db), reads=MemoryWebhooks(core.db), clock=core.clock)
    await admin.register("https://slow.example.com/")
    receiver = Receiver()
    receiver.hanging = True
    worker = Worker(
        processor=core.processor,
        queue=core.queue,
        concurrency=4,
        sweeper=core.sweeper,
        backgrounds=[sender_of(core, receiver, concurrency=2)],
    )
    running = asyncio.create_task(worker.run())
    try:
        ids = [(await core.service.submit("reverse", f"t{n}")).id for n in range(20)]
        await eventually(lambda: len(receiver.posts) == 2)  # the first two webhooks hang
        more = [(await core.service.submit("reverse", f"u{n}")).id for n in range(20)]
        await eventually(
            lambda: all(core.db.tasks[i].status is TaskStatus.COMPLETED for i in ids + more), within=60
        )
        assert len(receiver.posts) == 2  # the others wait their turn behind the hanging two
    finally:
        receiver.hang.set()
        worker.stop()
        await asyncio.wait_for(running, 60)


async def test_a_sender_that_died_mid_post_leaves_the_delivery_to_another_after_the_lease(
    core: Core,
) -> None:
    """At least once: the second sender posts the same message id once the
    first one's lease (the timeout and a margin) is over."""
    await finish(core, callback_url="https://cb.example.com/x")
    stuck = Receiver()
    stuck.hanging = True
    dying = asyncio.create_task(sender_of(core, stuck).send_due())
    await eventually(lambda: bool(stuck.posts))
    dying.cancel()  # the process died mid-post

    second = Receiver()
    assert await sender_of(core, second).send_due() == 0  # held by the lease
    await asyncio.sleep(40)  # timeout 10 s + margin 30 s
    assert await sender_of(core, second).send_due() == 1
    assert [d.message_id for d, _, _ in second.posts] == [stuck.posts[0][0].message_id]
    assert deliveries(core)[0].attempts == 2


async def test_redelivered_after_failing(core: Core) -> None:
    webhooks = MemoryWebhooks(core.db)
    admin = WebhookAdmin(endpoints=webhooks, reads=webhooks, clock=core.clock)
    await admin.register("https://hooks.example.com/")
    await finish(core)
    await sender_of(core, Receiver(lambda _: 410), retries=DeliveryRetries(window_s=0.5)).send_due()
    (failed,) = await admin.deliveries(DeliveryQuery(status=DeliveryStatus.FAILED))
    again = await admin.redeliver(failed.id, None)
    assert again.status is DeliveryStatus.PENDING
    receiver = Receiver()
    assert await sender_of(core, receiver).send_due() == 1
    assert deliveries(core)[0].status is DeliveryStatus.DELIVERED


def test_the_default_retries_span_a_day_in_about_a_dozen_attempts() -> None:
    retries = DeliveryRetries()
    start = datetime(2026, 1, 1)
    delivery = WebhookDelivery(
        id=1,
        task_id=1,
        event="task.completed",
        url="https://x.example.com",
        endpoint_id=None,
        owner=None,
        payload={},
        status=DeliveryStatus.PENDING,
        attempts=0,
        created_at=start,
        retry_from=start,
    )
    now, attempts = start, 0
    while True:
        attempts += 1
        delivery = msgspec.structs.replace(delivery, attempts=attempts)
        nxt = retries.next_attempt(delivery, now, 1.0)
        if nxt is None:
            break
        now = nxt
    assert 10 <= attempts <= 16
    assert timedelta(hours=20) <= now - start <= timedelta(days=1)
