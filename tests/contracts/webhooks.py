"""The behaviour every webhook adapter must have (``WebhookEndpoints``,
``WebhookOutbox``, ``DeliveryReads``).

Subclass ``WebhooksContract`` next to a ``webhooks`` fixture
(``MemoryWebhooks``, ``PostgresWebhooks``) and a ``tasks`` fixture (the task
table's adapter, ``tests/contracts/tasks.py``) over one empty database. The
deliveries are made by the task table itself when a task ends (PostgreSQL's
trigger, the memory tables' save), so these tests end tasks through
``tasks.save`` and read what was made.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import msgspec

from taskcore.model.status import TaskStatus
from taskcore.model.task import Task
from taskcore.model.webhooks import (
    EVENTS,
    DeliveryQuery,
    DeliveryStatus,
    NewEndpoint,
    WebhookDelivery,
    WebhookEndpoint,
)
from taskcore.ports import DeliveryReads, WebhookEndpoints, WebhookOutbox
from tests.contracts.tasks import LEASE, T0, Tasks, later, new_task


class Webhooks(WebhookEndpoints, WebhookOutbox, DeliveryReads, Protocol):
    """The three ports, as one adapter implements them."""


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def endpoint(
    webhooks: Webhooks,
    url: str = "https://hooks.example.com/a",
    *,
    owner: str | None = None,
    events: tuple[str, ...] = EVENTS,
) -> WebhookEndpoint:
    return await webhooks.add_endpoint(
        NewEndpoint(url=url, events=events, secret=SECRET, owner=owner, description=None, created_at=T0)
    )


async def ended(
    tasks: Tasks,
    status: TaskStatus,
    *,
    owner: str | None = None,
    callback_url: str | None = None,
    at: float = 2,
) -> Task:
    """A task of ``owner`` that ended with ``status`` at ``later(at)``."""
    new = msgspec.structs.replace(new_task(), owner=owner, callback_url=callback_url)
    task = await tasks.add(new)
    if status is TaskStatus.CANCELLED:
        final = task.cancel(later(at))
    else:
        claimed = await tasks.claim(task.id, later(1), LEASE)
        assert claimed is not None
        final = (
            claimed.complete({"ok": True}, later(at))
            if status is TaskStatus.COMPLETED
            else claimed.fail("boom", later(at), None)
        )
    assert await tasks.save(final)
    return final


async def of_task(webhooks: Webhooks, task: Task) -> list[WebhookDelivery]:
    return sorted(await webhooks.deliveries(DeliveryQuery(task_id=task.id)), key=lambda d: d.id)


class WebhooksContract:
    async def test_an_ended_task_makes_one_delivery_per_receiver_with_its_final_state(
        self, webhooks: Webhooks, tasks: Tasks
    ) -> None:
        everyone = await endpoint(webhooks, "https://hooks.example.com/all")
        alices = await endpoint(webhooks, "https://hooks.example.com/alice", owner="alice")
        await endpoint(webhooks, "https://hooks.example.com/bob", owner="bob")
        await endpoint(webhooks, "https://hooks.example.com/fails", owner="alice", events=("task.failed",))

        done = await ended(
            tasks, TaskStatus.COMPLETED, owner="alice", callback_url="https://cb.example.com/x"
        )
        made = await of_task(webhooks, done)

        assert sorted((d.url, d.endpoint_id, d.owner) for d in made) == sorted(
            [
                ("https://cb.example.com/x", None, "alice"),
                ("https://hooks.example.com/all", everyone.id, None),
                ("https://hooks.example.com/alice", alices.id, "alice"),
            ]
        )
        for delivery in made:
            assert delivery.event == "task.completed"
            assert delivery.status is DeliveryStatus.PENDING
            assert delivery.attempts == 0
            assert delivery.next_attempt_at == delivery.created_at == delivery.retry_from == later(2)
            assert delivery.payload["type"] == "task.completed"
            assert delivery.payload["timestamp"] == "2025-03-04T05:06:09.123456Z"
            data = delivery.payload["data"]
            assert (data["id"], data["status"], data["result"], data["attempts"]) == (
                done.id,
                "COMPLETED",
                {"ok": True},
                1,
            )
            assert data["finished_at"] == "2025-03-04T05:06:09.123456Z"

    async def test_each_final_status_is_its_event_and_other_transitions_make_none(
        self, webhooks: Webhooks, tasks: Tasks
    ) -> None:
        await endpoint(webhooks)
        failed = await ended(tasks, TaskStatus.FAILED)
        cancelled = await ended(tasks, TaskStatus.CANCELLED)
        assert [d.event for d in await of_task(webhooks, failed)] == ["task.failed"]
        assert [d.event for d in await of_task(webhooks, cancelled)] == ["task.cancelled"]
        assert (await of_task(webhooks, failed))[0].payload["data"]["error"] == "boom"

        # Claimed, retried, released: not an end.
        task = await tasks.add(new_task())
        claimed = await tasks.claim(task.id, later(1), LEASE)
        assert claimed is not None
        retrying = claimed.fail("boom", later(2), LEASE)
        assert await tasks.save(retrying)
        assert await of_task(webhooks, task) == []

    async def test_a_task_that_ends_again_after_a_retry_makes_new_deliveries(
        self, webhooks: Webhooks, tasks: Tasks
    ) -> None:
        failed = await ended(tasks, TaskStatus.FAILED, callback_url="https://cb.example.com/x")
        again = failed.retry(later(3))
        assert await tasks.save(again)
        claimed = await tasks.claim(again.id, later(4), LEASE)
        assert claimed is not None
        assert await tasks.save(claimed.complete("ok", later(5)))
        assert [d.event for d in await of_task(webhooks, failed)] == ["task.failed", "task.completed"]

    async def test_no_receiver_no_delivery(self, webhooks: Webhooks, tasks: Tasks) -> None:
        await endpoint(webhooks, owner="bob")
        done = await ended(tasks, TaskStatus.COMPLETED, owner="alice")
        assert await of_task(webhooks, done) == []

    async def test_claims_count_the_attempt_hold_the_delivery_and_never_overlap(
        self, webhooks: Webhooks, tasks: Tasks
    ) -> None:
        await endpoint(webhooks)
        made = [(await of_task(webhooks, await ended(tasks, TaskStatus.COMPLETED)))[0] for _ in range(12)]

        batches = await asyncio.gather(*(webhooks.claim_deliveries(later(3), later(60), 5) for _ in range(4)))
        claimed = [due.delivery for batch in batches for due in batch]
        assert sorted(d.id for d in claimed) == sorted(d.id for d in made)  # each once
        assert all(d.attempts == 1 and d.next_attempt_at == later(60) for d in claimed)
        assert all(due.secret == SECRET for batch in batches for due in batch)
        assert await webhooks.claim_deliveries(later(59), later(120), 50) == []
        # The lease over (its sender died): due again, a second attempt.
        again = await webhooks.claim_deliveries(later(60), later(120), 50)
        assert sorted(due.delivery.id for due in again) == sorted(d.id for d in made)
        assert {due.delivery.attempts for due in again} == {2}

    async def test_a_callbacks_secret_is_none_and_claims_go_oldest_due_first(
        self, webhooks: Webhooks, tasks: Tasks
    ) -> None:
        late = await ended(tasks, TaskStatus.COMPLETED, callback_url="https://cb.example.com/1", at=5)
        early = await ended(tasks, TaskStatus.COMPLETED, callback_url="https://cb.example.com/2", at=3)
        first = await webhooks.claim_deliveries(later(10), later(60), 1)
        assert [(due.delivery.task_id, due.secret) for due in first] == [(early.id, None)]
        assert [due.delivery.task_id for due in await webhooks.claim_deliveries(later(10), later(60), 5)] == [
            late.id
        ]

    async def test_delivered_and_failed_attempts_are_recorded(self, webhooks: Webhooks, tasks: Tasks) -> None:
        await endpoint(webhooks)
        one, two, three = [await ended(tasks, TaskStatus.COMPLETED) for _ in range(3)]
        due = {
            d.delivery.task_id: d.delivery for d in await webhooks.claim_deliveries(later(3), later(60), 10)
        }

        await webhooks.delivered(due[one.id].id, later(4), 204)
        await webhooks.attempt_failed(due[two.id].id, error="HTTP 503", status_code=503, retry_at=later(30))
        await webhooks.attempt_failed(due[three.id].id, error="refused", status_code=None, retry_at=None)

        (delivered,) = await of_task(webhooks, one)
        assert (delivered.status, delivered.delivered_at, delivered.last_status) == (
            DeliveryStatus.DELIVERED,
            later(4),
            204,
        )
        assert delivered.next_attempt_at is None
        (retrying,) = await of_task(webhooks, two)
        assert (retrying.status, retrying.next_attempt_at, retrying.last_status, retrying.last_error) == (
            DeliveryStatus.PENDING,
            later(30),
            503,
            "HTTP 503",
        )
        (failed,) = await of_task(webhooks, three)
        assert (failed.status, failed.next_attempt_at, failed.last_error) == (
            DeliveryStatus.FAILED,
            None,
            "refused",
        )
        assert [d.delivery.task_id for d in await webhooks.claim_deliveries(later(30), later(90), 10)] == [
            two.id
        ]

        # A late record of a delivery that was meanwhile finished changes nothing.
        await webhooks.attempt_failed(delivered.id, error="late", status_code=500, retry_at=later(99))
        assert (await of_task(webhooks, one))[0].status is DeliveryStatus.DELIVERED

    async def test_listing_filters_by_owner_status_task_and_endpoint_newest_first_in_pages(
        self, webhooks: Webhooks, tasks: Tasks
    ) -> None:
        alices = await endpoint(webhooks, owner="alice")
        made = [await ended(tasks, TaskStatus.COMPLETED, owner="alice") for _ in range(5)]
        await ended(tasks, TaskStatus.COMPLETED, owner="bob", callback_url="https://cb.example.com/bob")
        mine = await webhooks.deliveries(DeliveryQuery(owner="alice"))
        assert [d.task_id for d in mine] == [task.id for task in reversed(made)]
        page = await webhooks.deliveries(DeliveryQuery(owner="alice", limit=2, before=mine[1].id))
        assert [d.id for d in page] == [mine[2].id, mine[3].id]
        assert len(await webhooks.deliveries(DeliveryQuery())) == 6
        assert len(await webhooks.deliveries(DeliveryQuery(endpoint_id=alices.id))) == 5
        assert await webhooks.deliveries(DeliveryQuery(status=DeliveryStatus.FAILED)) == []

    async def test_endpoints_are_listed_and_removed_by_their_owner_and_pending_deliveries_fail(
        self, webhooks: Webhooks, tasks: Tasks
    ) -> None:
        alices = await endpoint(webhooks, owner="alice")
        bobs = await endpoint(webhooks, "https://hooks.example.com/bob", owner="bob")
        assert alices.secret == SECRET
        assert alices.events == EVENTS
        assert alices.created_at == T0
        assert await webhooks.endpoints("alice") == [alices]
        assert await webhooks.endpoints(None) == [alices, bobs]
        done = await ended(tasks, TaskStatus.COMPLETED, owner="alice")

        assert not await webhooks.remove_endpoint(alices.id, "bob")
        assert await webhooks.remove_endpoint(alices.id, "alice")
        assert not await webhooks.remove_endpoint(alices.id, "alice")
        assert await webhooks.endpoints(None) == [bobs]
        (dropped,) = await of_task(webhooks, done)
        assert (dropped.status, dropped.last_error) == (DeliveryStatus.FAILED, "its endpoint was removed")
        assert await webhooks.claim_deliveries(later(10), later(60), 10) == []

    async def test_a_failed_delivery_is_redelivered_with_its_retries_starting_over(
        self, webhooks: Webhooks, tasks: Tasks
    ) -> None:
        done = await ended(
            tasks, TaskStatus.COMPLETED, owner="alice", callback_url="https://cb.example.com/x"
        )
        (due,) = await webhooks.claim_deliveries(later(3), later(60), 10)
        assert await webhooks.redeliver(due.delivery.id, None, later(5)) is None  # not FAILED
        await webhooks.attempt_failed(due.delivery.id, error="gone", status_code=410, retry_at=None)

        assert await webhooks.redeliver(due.delivery.id, "bob", later(100)) is None  # not bob's
        again = await webhooks.redeliver(due.delivery.id, "alice", later(100))
        assert again is not None
        assert (again.status, again.attempts, again.retry_from, again.next_attempt_at, again.last_error) == (
            DeliveryStatus.PENDING,
            0,
            later(100),
            later(100),
            None,
        )
        assert again.created_at == later(2)
        assert again.message_id == due.delivery.message_id
        assert [d.delivery.task_id for d in await webhooks.claim_deliveries(later(100), later(160), 5)] == [
            done.id
        ]
