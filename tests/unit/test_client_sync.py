"""``taskcore.client.Client``, the synchronous twin, against the real app.

Litestar's ``TestClient`` runs the app (and its embedded worker) in a portal
thread on real time, so these tests keep their waits short; the retry and
wait rules the two clients share are tested on fake time in
``test_client.py``. What is tested here is the synchronous I/O: every method
through a real ``httpx.Client``, the stream, the sleeps between attempts.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from dependency_injector import providers
from litestar import Litestar
from litestar.testing import TestClient
from litestar.testing import transport as litestar_transport

from taskcore.adapters.memory import MemoryDatabase
from taskcore.client import (
    Client,
    Conflict,
    Forbidden,
    NotFound,
    Retries,
    Step,
    TaskSpec,
    TaskStatus,
    TransportError,
    Unauthorized,
    Unprocessable,
)
from taskcore.client.retries import retry_after
from taskcore.entrypoints.container import Container
from taskcore.entrypoints.http import create_app

from .client_support import BASE_URL, SECRET, Faults, FlakySync, make_container, to, token
from .test_webhooks import CALLBACK_SECRET, Receiver

QUICK = Retries(attempts=4, backoff_s=0.01, max_backoff_s=0.05, total_s=10.0)


@dataclass
class Served:
    client: Client
    faults: Faults
    container: Container

    def stored(self) -> int:
        db = self.container.database()
        assert isinstance(db, MemoryDatabase)
        return len(db.tasks)


@contextmanager
def serve(app: Litestar, faults: Faults) -> Iterator[FlakySync]:
    """A transport to ``app`` through ``faults``; the app runs for the block."""
    with TestClient(app, base_url=BASE_URL) as test_client:
        yield FlakySync(litestar_transport.TestClientTransport(test_client), faults)  # type: ignore[arg-type]


@pytest.fixture
def served() -> Iterator[Served]:
    container = make_container(shutdown_grace_s=1, retry_base_s=0.01, retry_cap_s=0.02)
    faults = Faults()
    with (
        serve(create_app(container, embedded_worker=True), faults) as transport,
        Client(BASE_URL, transport=transport, retries=QUICK) as client,
    ):
        yield Served(client, faults, container)


def test_tasks_from_submit_to_listing(served: Served) -> None:
    client = served.client
    task = client.submit("reverse", "hello", priority=2)
    assert (task.status, task.priority) == (TaskStatus.PENDING, 2)
    states = [state.status for state in client.events(task.id)]
    assert states[-1] is TaskStatus.COMPLETED
    assert TaskStatus.PROCESSING in states
    assert client.wait(task.id).result == "olleh"
    assert client.get(task.id).is_final
    ids = [task.id] + [client.submit("reverse", f"t{i}").id for i in range(4)]
    assert [t.id for t in client.list(page_size=2)] == sorted(ids, reverse=True)
    page = client.list_page(limit=3)
    assert len(page.items) == 3
    assert page.next_cursor is not None
    with pytest.raises(NotFound) as missing:
        client.get(99_999)
    assert missing.value.instance == "/tasks/99999"


def test_tags_and_metadata(served: Served) -> None:
    client = served.client
    tagged = client.submit("reverse", "a", tags=["sync", "x"], metadata={"k": [1]})
    assert (tagged.tags, tagged.metadata) == (("sync", "x"), {"k": [1]})
    client.submit("reverse", "b", tags=["x"])
    assert [t.id for t in client.list(tag=["sync", "x"])] == [tagged.id]
    flow = client.workflows.submit([Step(name="s", type="reverse", input="c")], tags=["sync"])
    assert [t.id for t in client.list(tag="sync")] == [flow.steps[0].id, tagged.id]


def test_wait_gives_up_at_its_timeout(served: Served) -> None:
    task = served.client.submit("slow", 0.6)
    started = time.monotonic()
    waited = served.client.wait(task.id, timeout=0.2)
    assert not waited.is_final
    assert 0.2 <= time.monotonic() - started < 0.6
    assert served.client.wait(task.id, timeout=5).result == 0.6


def test_cancel_retry_and_bulk(served: Served) -> None:
    client = served.client
    task = client.submit("slow", 5.0, delay=60)
    assert client.cancel(task.id).status is TaskStatus.CANCELLED
    with pytest.raises(Conflict):
        client.cancel(task.id)
    assert client.retry(task.id).status is TaskStatus.PENDING
    others = [client.submit("slow", 5.0, delay=60).id for _ in range(3)]
    outcome = client.cancel_matching(type="slow", limit=3)
    assert (outcome.matched, outcome.changed) == (3, 3)
    assert outcome.next_cursor is not None
    assert client.cancel_matching(type="slow", cursor=outcome.next_cursor).changed == 1
    assert {client.get(i).status for i in [task.id, *others]} == {TaskStatus.CANCELLED}
    assert client.retry_matching(type="slow", status="CANCELLED").changed == 4
    assert client.cancel_matching(type="slow").changed == 4  # so the app stops at once


def test_batches_workflows_and_queues(served: Served) -> None:
    client = served.client
    batch = client.submit_many([TaskSpec(type="reverse", input=text) for text in ("ab", "cd")])
    assert [client.wait(t.id).result for t in batch.items] == ["ba", "dc"]
    with pytest.raises(Unprocessable):
        client.submit_many([TaskSpec(type="nope", input="x")])
    flow = client.workflows.submit(
        [Step(name="a", type="reverse", input="abc"), Step(name="b", type="reverse", input="de", after=["a"])]
    )
    assert client.wait(flow.step("b").id).result == "ed"
    assert client.workflows.get(flow.id).status == "COMPLETED"
    assert client.workflows.cancel(flow.id).status == "COMPLETED"
    assert {queue.name for queue in client.queues.list()} == {"default", "urgent"}
    assert client.queues.pause("urgent").paused
    assert not client.queues.resume("urgent").paused


def test_a_submit_whose_answer_is_lost_makes_one_task(served: Served) -> None:
    served.faults.add("refuse").add("lose", when=to("POST", "/tasks/")).add(
        "reset", when=to("POST", "/tasks/")
    )
    submitted = served.client.submit_detailed("reverse", "once")
    assert served.faults.injected == ["refuse", "lose", "reset"]
    assert submitted.replayed
    assert served.stored() == 1
    keys = {r.headers["idempotency-key"] for r in served.faults.requests}
    assert len(keys) == 1


def test_a_batch_whose_answer_is_lost_is_not_sent_again(served: Served) -> None:
    served.faults.add("lose", when=to("POST", "/tasks/batch"))
    with pytest.raises(TransportError) as lost:
        served.client.submit_many([TaskSpec(type="reverse", input="x")])
    assert isinstance(lost.value.__cause__, httpx.ReadError)
    assert served.stored() == 1


def test_events_resume_after_a_dropped_stream(served: Served) -> None:
    task = served.client.submit("slow", 0.3)
    events = to("GET", f"/tasks/{task.id}/events")
    served.faults.add("truncate", when=events)
    states = [state.status for state in served.client.events(task.id)]
    assert states[-1] is TaskStatus.COMPLETED
    assert len(states) == len(set(states))  # nothing seen twice
    streams = [r for r in served.faults.requests if events(r)]
    assert "last-event-id" not in streams[0].headers
    assert int(streams[1].headers["last-event-id"]) >= 1  # the version of the one event it had


def test_detail_and_progress(served: Served) -> None:
    client = served.client
    task = client.submit("report", 1)
    states = list(client.events(task.id))
    done = states[-1]
    assert (done.status, done.progress, done.progress_message) == (TaskStatus.COMPLETED, 1.0, "step 1")
    # A busy machine may stream fewer changes, never other ones: the report is 0.5 at most.
    assert {s.progress for s in states[:-1]} <= {None, 0.5}
    assert all(s.type == "report" for s in states)
    assert [s.status for s in client.events(task.id, progress=False)] == [TaskStatus.COMPLETED]
    detail = client.get_detail(task.id)
    assert (detail.input, detail.result, detail.owner) == (1, 1, "anonymous")
    assert [(a.number, a.outcome) for a in detail.attempt_log] == [(1, "COMPLETED")]
    with pytest.raises(NotFound):
        client.get_detail(99_999)


def test_webhooks() -> None:
    receiver = Receiver()
    container = make_container(
        shutdown_grace_s=1,
        webhook_secret=CALLBACK_SECRET,
        webhook_allow_private=True,
        webhook_retry_base_s=0.1,
    )
    container.webhook_poster.override(providers.Object(receiver))
    faults = Faults()
    with (
        serve(create_app(container, embedded_worker=True), faults) as transport,
        Client(BASE_URL, transport=transport, retries=QUICK) as client,
    ):
        hook = client.webhooks.create("http://127.0.0.1:9/in", events=["task.completed"])
        assert hook.secret.startswith("whsec_")
        assert [h.id for h in client.webhooks.list()] == [hook.id]
        task = client.submit("reverse", "ab", callback_url="http://127.0.0.1:9/cb")
        assert task.callback_url == "http://127.0.0.1:9/cb"
        [other] = client.submit_many(
            [TaskSpec(type="reverse", input="c", callback_url="http://127.0.0.1:9/cb")]
        ).items
        assert other.callback_url == task.callback_url
        deadline = time.monotonic() + 30
        while len(receiver.received) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        delivered = list(client.webhooks.deliveries(page_size=3))
        assert [d.status for d in delivered] == ["DELIVERED"] * 4
        assert len([r for r in faults.requests if r.url.path == "/webhooks/deliveries"]) == 2
        assert {d.endpoint_id for d in client.webhooks.deliveries(task_id=task.id)} == {None, hook.id}
        assert client.webhooks.deliveries_page(endpoint_id=hook.id, limit=1).next_before is not None
        with pytest.raises(NotFound):
            client.webhooks.retry_delivery(delivered[0].id)  # DELIVERED, not FAILED
        faults.add("lose", when=to("DELETE", f"/webhooks/{hook.id}"))
        client.webhooks.delete(hook.id)  # resent; its 404 is the first attempt's doing
        assert client.webhooks.list() == []
        with pytest.raises(NotFound):
            client.webhooks.delete(hook.id)
        with pytest.raises(Unprocessable):
            client.webhooks.create("ftp://example.com/")


def test_bearer_tokens() -> None:
    container = make_container(jwt_secret=SECRET, shutdown_grace_s=1)
    app = create_app(container, embedded_worker=True, default_auth="jwt")
    asked: list[str] = []

    def rotating() -> str:
        asked.append(token())
        return asked[-1]

    faults = Faults().add("refuse")
    with serve(app, faults) as transport:
        with Client(BASE_URL, transport=transport, token=rotating, retries=QUICK) as client:
            task = client.submit("reverse", "abc")
            assert len(asked) == 2  # once per attempt
            assert faults.requests[-1].headers["authorization"] == f"Bearer {asked[-1]}"
            with pytest.raises(Forbidden):
                client.queues.list()
        with Client(BASE_URL, transport=transport) as anonymous, pytest.raises(Unauthorized):
            anonymous.get(task.id)
        admin_token = token("ops", scope="tasks:read tasks:write tasks:admin")
        with (
            Client(BASE_URL, transport=transport, token=admin_token) as admin,
            Client(BASE_URL, transport=transport, token=token("bob")) as bob,
        ):
            assert [t.id for t in admin.list(owner="alice")] == [task.id]
            assert admin.list_page(owner="bob").items == []
            with pytest.raises(Forbidden):
                list(bob.list(owner="alice"))
            hook = admin.webhooks.create("https://ops.example.com/")
            with pytest.raises(NotFound):
                bob.webhooks.delete(hook.id)


def test_the_retry_policy() -> None:
    policy = Retries(attempts=5, backoff_s=1.0, max_backoff_s=4.0, total_s=20.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)]:
        waits = [policy.backoff(attempt) for _ in range(200)]
        assert ceiling / 2 <= min(waits) <= max(waits) <= ceiling  # jittered within [half, all]
    assert policy.wait(5, 0.0) is None  # the fifth attempt was the last
    assert policy.wait(1, 19.9) is None  # the wait would end past total_s
    assert 3.0 <= (policy.wait(1, 0.0, retry_after=3.0) or 0) <= 3.3  # Retry-After, plus jitter
    with pytest.raises(ValueError, match="attempts"):
        Retries(attempts=0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (" 0 ", 0.0), ("soon", None), ("-3", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_in_seconds_or_as_a_date(header: str, seconds: float | None) -> None:
    response = httpx.Response(503, headers={"Retry-After": header})
    assert retry_after(response) == seconds


def test_retry_after_a_date_to_come() -> None:
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    waited = retry_after(httpx.Response(503, headers={"Retry-After": later}))
    assert waited is not None
    assert 28 <= waited <= 30
