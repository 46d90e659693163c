"""Named queues: where a handler's tasks wait, overriding it at submit, and
workers that consume only some queues. The memory queue keeps each queue
apart as RabbitMQ does (tests/integration/rabbitmq for the real one)."""

from __future__ import annotations

import asyncio

import pytest
from litestar import Litestar

from taskcore import HandlerRegistry, Outcome, TaskProcessor, TaskStatus, Worker, register_builtins
from taskcore.adapters.memory import MemoryQueue, MemoryQueueDepths, MemoryQueues
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from taskcore.errors import ConfigurationError, HandlerRegistrationError, InvalidInput
from taskcore.model.idempotency import IdempotencyConflict
from taskcore.model.messages import decode_task_message
from taskcore.model.query import TaskQuery
from taskcore.model.queues import DEFAULT_QUEUE, check_queue_name
from taskcore.work.pauses import PauseWatcher
from tests.core import Core, LoopClock, build_core

from .test_http import on_loop_time, serving


def queued_registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler
    async def plain(text: str) -> str:
        return text

    @registry.handler(queue="emails")
    async def send(to: str) -> str:
        return f"sent to {to}"

    registry.add_queue("urgent")
    return registry


@pytest.fixture
def core() -> Core:
    return build_core(clock=LoopClock(), registry=queued_registry())


def test_a_handler_waits_in_the_default_queue_unless_it_names_one() -> None:
    registry = queued_registry()
    assert (registry.get("plain").queue, registry.get("send").queue) == (DEFAULT_QUEUE, "emails")
    assert registry.queues() == ["default", "emails", "urgent"]


@pytest.mark.parametrize("name", ["", "Emails", "a b", "-x", "dlq", "delay", "x" * 64, 3])
def test_a_queue_name_is_short_and_plain(name: object) -> None:
    with pytest.raises(InvalidInput):
        check_queue_name(name)
    with pytest.raises(HandlerRegistrationError):
        HandlerRegistry().register(lambda text: text, name="t", queue=name)  # type: ignore[arg-type]


async def test_a_task_goes_to_its_handlers_queue_or_a_known_one_the_submit_names(core: Core) -> None:
    mail = await core.service.submit("send", "ann@example.com")
    plain = await core.service.submit("plain", "x")
    rushed = await core.service.submit("send", "bob@example.com", queue="urgent")
    assert (mail.queue, plain.queue, rushed.queue) == ("emails", "default", "urgent")
    assert core.queue.depth_of("emails") == 1
    assert core.queue.depth_of("default") == 1
    assert core.queue.depth_of("urgent") == 1
    with pytest.raises(InvalidInput, match="unknown queue 'reports'"):
        await core.service.submit("send", "x", queue="reports")
    assert len(core.db.tasks) == 3  # nothing stored for the refused one
    found = await core.tasks.find(TaskQuery(queue="emails"))
    assert [task.id for task in found] == [mail.id]


async def test_an_idempotency_key_replays_only_the_same_queue(core: Core) -> None:
    first, created = await core.service.submit_once("send", "a", idempotency_key="k", queue="urgent")
    again, created_again = await core.service.submit_once("send", "a", idempotency_key="k", queue="urgent")
    assert (created, created_again, again.id) == (True, False, first.id)
    with pytest.raises(IdempotencyConflict):
        await core.service.submit_once("send", "a", idempotency_key="k")


@pytest.mark.looptime
async def test_a_worker_consumes_only_its_queues(core: Core) -> None:
    mail = await core.service.submit("send", "ann@example.com")
    plain = await core.service.submit("plain", "x")
    worker = Worker(processor=core.processor, queue=core.queue, concurrency=4, queues=["emails"])
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(1)  # it has had every chance to take both
    worker.stop()
    await running
    assert core.db.tasks[mail.id].status is TaskStatus.COMPLETED
    assert core.db.tasks[plain.id].status is TaskStatus.PENDING
    assert core.queue.depth_of("default") == 1
    assert worker.outcomes[Outcome.COMPLETED] == 1


@pytest.mark.looptime
async def test_a_consumer_of_several_queues_takes_from_each_in_turn() -> None:
    queue = MemoryQueue(LoopClock())
    for n in range(3):
        await queue.publish(f"{n}".encode(), queue="a")
        await queue.publish(f"{10 + n}".encode(), queue="b")
    async with queue.consume(prefetch=10, queues=["a", "b"]) as consumer:
        taken = [decode_task_message((await consumer.next()).body) for _ in range(6)]
    assert taken == [0, 10, 1, 11, 2, 12]


@pytest.mark.looptime
async def test_each_queue_has_its_own_depth_and_dead_letters() -> None:
    queue = MemoryQueue(LoopClock())
    depths = MemoryQueueDepths(queue)
    await queue.publish(b"1", queue="emails")
    await queue.publish(b"2", queue="emails")
    await queue.publish(b"3")
    async with queue.consume(prefetch=1, queues=["emails"]) as consumer:
        await (await consumer.next()).dead_letter("bad")
    assert (await depths.depth("emails"), await depths.depth()) == (1, 1)
    assert (await depths.dead_letter_depth("emails"), await depths.dead_letter_depth()) == (1, 0)


def test_a_worker_started_for_a_queue_no_handler_uses_refuses_to_start() -> None:
    settings = load_settings({"TASKCORE_WORKER_QUEUES": "emails, reportz"})
    container = build_container(settings, queued_registry())
    with pytest.raises(ConfigurationError, match="'reportz'"):
        container.worker_queues()
    settings = load_settings({"TASKCORE_WORKER_QUEUES": " emails,urgent,emails"})
    assert build_container(settings, queued_registry()).worker_queues() == ["emails", "urgent"]
    assert build_container(load_settings({}), queued_registry()).worker_queues() == [
        "default",
        "emails",
        "urgent",
    ]


@pytest.fixture
def app() -> Litestar:
    registry = queued_registry()
    register_builtins(registry, reverse_delay_s=0)
    container = on_loop_time(build_container(load_settings({}), registry))
    return create_app(container, embedded_worker=True)


@pytest.mark.looptime
async def test_over_http_a_submit_names_a_queue_and_a_listing_filters_by_it(app: Litestar) -> None:
    async with serving(app) as client:
        mail = (await client.post("/tasks/", json={"type": "send", "input_data": "a"})).json()
        rushed = await client.post("/tasks/", json={"type": "send", "input_data": "b", "queue": "urgent"})
        assert rushed.status_code == 201
        assert (mail["queue"], rushed.json()["queue"]) == ("emails", "urgent")
        unknown = await client.post("/tasks/", json={"type": "send", "input_data": "c", "queue": "nope"})
        assert unknown.status_code == 422
        assert "unknown queue 'nope'" in unknown.json()["detail"]
        listed = (await client.get("/tasks", params={"queue": "urgent"})).json()
        assert [task["id"] for task in listed["items"]] == [rushed.json()["id"]]


def paused_worker(
    core: Core, *, interval_s: float = 1.0, concurrency: int = 4
) -> tuple[Worker, MemoryQueues]:
    """A worker of every queue, with the pause watcher the container gives it."""
    states = MemoryQueues(core.db)
    pauses = PauseWatcher(states, core.registry.queues(), interval_s=interval_s)
    processor = TaskProcessor(
        attempts=core.tasks,
        transitions=core.transitions,
        clock=core.clock,
        registry=core.registry,
        config=core.config,
        pauses=pauses,
    )
    worker = Worker(
        processor=processor,
        queue=core.queue,
        concurrency=concurrency,
        queues=core.registry.queues(),
        pauses=pauses,
    )
    return worker, states


def statuses(core: Core, ids: list[int]) -> list[TaskStatus]:
    return [core.db.tasks[task_id].status for task_id in ids]


@pytest.mark.looptime
async def test_a_paused_queue_starts_nothing_keeps_its_wake_ups_and_drains_on_resume(core: Core) -> None:
    order: list[int] = []

    @core.registry.handler(queue="emails", name="mail")
    async def mail(n: int) -> None:
        order.append(n)

    worker, states = paused_worker(core, concurrency=1)  # one at a time: the order shows
    await states.pause("emails", core.clock.now())
    mails = [(await core.service.submit("mail", n, priority=n)).id for n in range(3)]
    plain = (await core.service.submit("plain", "x")).id
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(5)
    assert statuses(core, mails) == [TaskStatus.PENDING] * 3  # submits accepted, nothing started
    assert core.db.tasks[plain].status is TaskStatus.COMPLETED  # the other queues carry on
    assert core.queue.depth_of("emails") == 3  # the wake-ups wait at the broker
    await states.resume("emails", core.clock.now())
    await asyncio.sleep(3)  # the watcher looks within a second
    worker.stop()
    await running
    assert statuses(core, mails) == [TaskStatus.COMPLETED] * 3
    assert order == [2, 1, 0]  # the backlog ran highest priority first
    assert worker.outcomes[Outcome.PAUSED] == 0  # the watcher kept the worker off the queue


@pytest.mark.looptime
async def test_a_wake_up_of_a_queue_paused_since_the_worker_last_looked_goes_back_to_the_broker(
    core: Core,
) -> None:
    """The claim refuses it (the database decides at once); the worker then looks
    at the pauses, leaves the queue alone and hands the wake-up back, rather
    than dropping it or taking it again and again."""
    worker, states = paused_worker(core, interval_s=3600)  # it would not look again for an hour
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(0.1)  # it has looked once
    await states.pause("emails", core.clock.now())
    mail = (await core.service.submit("send", "a@example.com")).id
    await asyncio.sleep(5)
    assert core.db.tasks[mail].status is TaskStatus.PENDING
    assert worker.outcomes[Outcome.PAUSED] == 1  # refused once, not again and again
    assert core.queue.depth_of("emails") == 1
    plain = (await core.service.submit("plain", "x")).id
    await asyncio.sleep(1)
    assert core.db.tasks[plain].status is TaskStatus.COMPLETED
    worker.stop()
    await running


@pytest.mark.looptime
async def test_a_task_running_when_its_queue_is_paused_finishes(
    core: Core, registry: HandlerRegistry
) -> None:
    gate = asyncio.Event()

    @core.registry.handler(queue="emails", name="slow")
    async def slow(_: str) -> str:
        await gate.wait()
        return "done"

    worker, states = paused_worker(core)
    first = (await core.service.submit("slow", "a")).id
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(0.5)
    assert core.db.tasks[first].status is TaskStatus.PROCESSING
    await states.pause("emails", core.clock.now())
    second = (await core.service.submit("slow", "b")).id
    await asyncio.sleep(2)
    gate.set()
    await asyncio.sleep(2)
    assert statuses(core, [first, second]) == [TaskStatus.COMPLETED, TaskStatus.PENDING]
    worker.stop()
    await running


@pytest.mark.looptime
async def test_over_http_a_queue_is_listed_paused_and_resumed(app: Litestar) -> None:
    async with serving(app) as client:
        await client.post("/tasks/", json={"type": "send", "input_data": "a", "delay_s": 60})
        listed = (await client.get("/queues")).json()["items"]
        assert [q["name"] for q in listed] == ["default", "emails", "urgent"]
        emails = listed[1]
        assert (emails["paused"], emails["scheduled"], emails["waiting"], emails["running"]) == (
            False,
            1,
            0,
            0,
        )
        assert (emails["ready"], emails["dead_letters"]) == (0, 0)
        paused = await client.post("/queues/emails/pause")
        assert (paused.status_code, paused.json()["paused"]) == (200, True)
        assert (await client.post("/queues/emails/pause")).json()["paused"]  # safe to repeat
        assert [q["paused"] for q in (await client.get("/queues")).json()["items"]] == [False, True, False]
        resumed = await client.post("/queues/emails/resume")
        assert (resumed.status_code, resumed.json()["paused"]) == (200, False)
        missing = await client.post("/queues/nope/pause")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
