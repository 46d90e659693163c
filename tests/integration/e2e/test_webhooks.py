"""Completion webhooks through real ``taskcore api`` and ``taskcore worker``
processes, PostgreSQL's trigger and a receiver on a real socket: a task's
callback and an owner's endpoint arrive signed (verified with the
``standardwebhooks`` package) after completion, through an outage of the
receiver; addresses that are not public are refused by default."""

from __future__ import annotations

import time

import httpx
import pytest
from standardwebhooks import Webhook

from tests.integration.webhooks.receiver import free_port, receiving

from .conftest import Stack

pytestmark = pytest.mark.integration

CALLBACK_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
RETRY_FAST = {
    "TASKCORE_WEBHOOK_SECRET": CALLBACK_SECRET,
    "TASKCORE_WEBHOOK_ALLOW_PRIVATE": "true",
    "TASKCORE_WEBHOOK_RETRY_BASE_S": "0.25",
}


def test_webhooks_arrive_signed_after_completion_and_through_an_outage(stack: Stack) -> None:
    port = free_port()  # nothing listens here yet: the receiver is down
    stack.start_api(**RETRY_FAST)
    stack.start_worker(**RETRY_FAST)
    registered = httpx.post(
        f"{stack.base_url}/webhooks",
        json={"url": f"http://127.0.0.1:{port}/endpoint", "events": ["task.completed", "task.failed"]},
        timeout=10,
    )
    assert registered.status_code == 201, registered.text
    endpoint_secret = registered.json()["secret"]

    task = stack.submit("hello", callback_url=f"http://127.0.0.1:{port}/callback")
    assert stack.wait_final(task["id"])["status"] == "COMPLETED"
    # The receiver is down: both deliveries fail (connection refused) and wait for their retry.
    deadline = time.monotonic() + 60
    while stack.sql(
        "SELECT count(*) FROM webhook_deliveries WHERE task_id = %s AND status = 'PENDING'"
        " AND last_error LIKE 'cannot reach%%'",
        task["id"],
    ) != [(2,)]:
        assert time.monotonic() < deadline, stack.sql("SELECT * FROM webhook_deliveries")
        time.sleep(0.05)
    with receiving(port) as receiver:
        received = receiver.wait_for(2, timeout=60)
    by_path = {got.path: got for got in received}
    callback = Webhook(CALLBACK_SECRET).verify(by_path["/callback"].body, by_path["/callback"].headers)
    endpoint = Webhook(endpoint_secret).verify(by_path["/endpoint"].body, by_path["/endpoint"].headers)
    for body in (callback, endpoint):
        assert body["type"] == "task.completed"
        assert body["data"]["id"] == task["id"]
        assert body["data"]["result"] == "olleh"

    page = httpx.get(
        f"{stack.base_url}/webhooks/deliveries", params={"task_id": task["id"]}, timeout=10
    ).json()
    assert {d["status"] for d in page["items"]} == {"DELIVERED"}
    assert all(d["attempts"] >= 2 for d in page["items"]), "each failed during the outage first"
    ids = {d["message_id"] for d in page["items"]}
    assert {got.headers["webhook-id"] for got in received} == ids  # the id every attempt carried


def test_private_receivers_are_refused_by_default(stack: Stack) -> None:
    stack.start_api(TASKCORE_WEBHOOK_SECRET=CALLBACK_SECRET)
    for url in ("http://127.0.0.1:9/", "http://169.254.169.254/latest/meta-data/", "http://localhost/"):
        refused = httpx.post(f"{stack.base_url}/webhooks", json={"url": url}, timeout=10)
        assert refused.status_code == 422, refused.text
        assert "not a public address" in refused.json()["detail"]
        refused = httpx.post(
            f"{stack.base_url}/tasks/", json={"input_data": "x", "callback_url": url}, timeout=10
        )
        assert refused.status_code == 422
    assert stack.sql("SELECT count(*) FROM tasks") == [(0,)]
