"""``taskcore.client`` against real ``taskcore api`` and ``taskcore worker`` processes.

The first test uses the API the way a service would, over real sockets with
JWT on: a long poll held by uvicorn, an event stream arriving while the task
runs, pages, cancels, retries, a batch, a workflow, the queues. Another
registers a webhook and a task's callback and follows their deliveries to a
receiver on a real socket. The last
kills the API with SIGKILL while clients submit through it and starts it
again on the same port: every logical submit must come back as exactly one
task, which the database shows (one row per Idempotency-Key, each its own
task, and no other task), and each must complete.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Iterator

import jwt
import pytest
from standardwebhooks import Webhook

from taskcore.client import AsyncClient, Client, Retries, Step, Submitted, TaskSpec, TaskStatus
from tests.integration.webhooks.receiver import receiving

from .conftest import Stack, free_port

pytestmark = pytest.mark.integration

SECRET = "an-integration-secret-that-is-long-enough!"
AUTH = {"TASKCORE_AUTH": "jwt", "TASKCORE_JWT_SECRET": SECRET}
# Through a restart: an API process takes a few seconds to start, more on a busy machine.
PATIENT = Retries(attempts=1000, backoff_s=0.05, max_backoff_s=0.5, total_s=90.0)


def token(sub: str = "alice", scope: str = "tasks:read tasks:write") -> str:
    return jwt.encode({"sub": sub, "scope": scope, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def streamed_in_order(states: list[TaskStatus]) -> bool:
    """A stream's states: the one it found on connecting (PENDING unless the machine was slow
    to connect), each later one once, ending COMPLETED; at least one before the end."""
    order = [TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED]
    return len(states) >= 2 and states == order[order.index(states[0]) :]


def test_a_service_uses_the_api_through_the_client(stack: Stack) -> None:
    stack.start_api(**AUTH)
    stack.start_worker()
    with Client(stack.base_url, token=token) as client:
        task = client.submit("reverse", "stream me", delay=1)  # PENDING for a second at least
        states = list(client.events(task.id))
        assert streamed_in_order([s.status for s in states])
        assert states[-1].result == "em maerts"
        later = client.submit("reverse", "later", delay=0.5)
        started = time.monotonic()
        assert client.wait(later.id, timeout=20).result == "retal"
        assert time.monotonic() - started >= 0.5
        batch = client.submit_many([TaskSpec(type="reverse", input=f"b{i}") for i in range(20)])
        assert [client.wait(t.id, timeout=20).result for t in batch.items] == [
            f"b{i}"[::-1] for i in range(20)
        ]
        ids = [task.id, later.id, *(t.id for t in batch.items)]
        assert [t.id for t in client.list(page_size=7)] == sorted(ids, reverse=True)
        waiting = client.submit("reverse", "never", delay=600)
        assert client.cancel(waiting.id).status is TaskStatus.CANCELLED
        assert client.retry(waiting.id).status is TaskStatus.PENDING
        assert client.wait(waiting.id, timeout=20).result == "reven"
        for _ in range(2):
            client.submit("reverse", "much later", delay=600)
        assert client.cancel_matching(status="PENDING").changed == 2
        flow = client.workflows.submit(
            [
                Step(name="a", type="reverse", input="ab"),
                Step(name="b", type="reverse", input="cd", after=["a"]),
            ]
        )
        assert client.wait(flow.step("b").id, timeout=20).result == "dc"
        assert client.workflows.get(flow.id).status == "COMPLETED"
    with Client(stack.base_url, token=token("ops", "tasks:admin")) as admin:
        assert [q.name for q in admin.queues.list()] == ["default"]
        assert admin.queues.pause("default").paused
        assert not admin.queues.resume("default").paused
        assert len(list(admin.list(status=TaskStatus.COMPLETED))) == 25


async def test_the_async_client_streams_and_long_polls(stack: Stack) -> None:
    stack.start_api(**AUTH)
    stack.start_worker()
    async with AsyncClient(stack.base_url, token=token) as client:
        tasks = await asyncio.gather(*(client.submit("reverse", f"a{i}") for i in range(10)))
        done = await asyncio.gather(*(client.wait(task.id, timeout=20) for task in tasks))
        assert [task.result for task in done] == [f"{i}a" for i in range(10)]
        streamed = await client.submit("reverse", "xyz", delay=1)
        assert streamed_in_order([state.status async for state in client.events(streamed.id)])
        assert len([task async for task in client.list(page_size=3)]) == 11


CALLBACK_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


def test_webhooks_and_callbacks_through_the_client(stack: Stack) -> None:
    hooks = {"TASKCORE_WEBHOOK_SECRET": CALLBACK_SECRET, "TASKCORE_WEBHOOK_ALLOW_PRIVATE": "true"}
    stack.start_api(**AUTH, **hooks)
    stack.start_worker(**hooks)
    with receiving() as receiver, Client(stack.base_url, token=token) as client:
        hook = client.webhooks.create(f"{receiver.url}/endpoint", events=["task.completed"])
        task = client.submit("reverse", "hooked", callback_url=f"{receiver.url}/callback")
        assert client.wait(task.id, timeout=20).callback_url == f"{receiver.url}/callback"
        by_path = {got.path: got for got in receiver.wait_for(2, timeout=60)}
        for path, secret in (("/endpoint", hook.secret), ("/callback", CALLBACK_SECRET)):
            body = Webhook(secret).verify(by_path[path].body, by_path[path].headers)
            assert (body["type"], body["data"]["id"], body["data"]["result"]) == (
                "task.completed",
                task.id,
                "dekooh",
            )
        deadline = time.monotonic() + 30
        while {d.status for d in client.webhooks.deliveries(task_id=task.id)} != {"DELIVERED"}:
            assert time.monotonic() < deadline, list(client.webhooks.deliveries(task_id=task.id))
            time.sleep(0.1)
        sent = list(client.webhooks.deliveries(task_id=task.id, page_size=1))
        assert {d.endpoint_id for d in sent} == {hook.id, None}
        assert {d.message_id for d in sent} == {got.headers["webhook-id"] for got in by_path.values()}
        assert [h.id for h in client.webhooks.list()] == [hook.id]
        client.webhooks.delete(hook.id)
        assert client.webhooks.list() == []
        assert client.get_detail(task.id).owner == "alice"


class Retried(logging.Handler):
    """Counts the client's retry warnings, from every thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def retried() -> Iterator[Retried]:
    handler = Retried()
    logger = logging.getLogger("taskcore.client")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


SUBMITTERS = 8
PER_SUBMITTER = 40


def test_submits_through_an_api_killed_and_restarted_make_one_task_each(
    stack: Stack, retried: Retried
) -> None:
    port = free_port()
    api = stack.start_api(port=port)
    stack.start_worker()
    answers: dict[str, Submitted] = {}
    failures: list[BaseException] = []
    done = threading.Semaphore(0)

    def submitter(n: int) -> None:
        with Client(stack.base_url, retries=PATIENT, timeout=10) as client:
            for i in range(PER_SUBMITTER):
                text = f"s{n}-{i}"
                try:
                    answers[text] = client.submit_detailed("reverse", text)
                except BaseException as exc:
                    failures.append(exc)
                    return
                finally:
                    done.release()

    threads = [threading.Thread(target=submitter, args=(n,), daemon=True) for n in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    for _ in range(SUBMITTERS * PER_SUBMITTER // 4):  # a quarter in: kill it mid-stream
        done.acquire(timeout=60)
    api.stop(signal.SIGKILL)
    killed_at = len(answers)
    time.sleep(0.5)
    stack.start_api(port=port)
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    total = SUBMITTERS * PER_SUBMITTER
    assert len(answers) == total
    assert killed_at < total  # the kill came while submits were going on
    assert retried.messages, "no request was retried: the API restart was not noticed"
    ids = {submitted.task.id for submitted in answers.values()}
    assert len(ids) == total
    # In the database: one remembered Idempotency-Key per logical submit, each its own task, no other task.
    assert stack.sql("SELECT count(*), count(DISTINCT task_id) FROM idempotency_keys") == [(total, total)]
    rows = stack.sql("SELECT id, input FROM tasks")
    assert len(rows) == total
    assert {row_id for row_id, _ in rows} == ids
    assert sorted(text for _, text in rows) == sorted(answers)
    with Client(stack.base_url, retries=PATIENT) as client:
        for text, submitted in answers.items():
            assert client.wait(submitted.task.id, timeout=60).result == text[::-1]
    replayed = sum(submitted.replayed for submitted in answers.values())
    print(
        f"killed after {killed_at} of {total} submits; {len(retried.messages)} retries; {replayed} replayed"
    )
