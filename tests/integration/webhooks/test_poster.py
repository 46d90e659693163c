"""``HttpWebhookPoster`` against a receiver on a real socket: the signature a
Standard Webhooks library verifies, the address checks made on what the
name resolves to, timeouts, refused connections, redirects not followed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from taskcore.adapters.webhooks import HttpWebhookPoster
from taskcore.errors import ServiceUnavailable
from taskcore.model.webhooks import DeliveryStatus, WebhookDelivery, WebhookRefused

from .receiver import free_port, receiving

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def delivery(url: str) -> WebhookDelivery:
    now = datetime.now(UTC)
    return WebhookDelivery(
        id=7,
        task_id=42,
        event="task.completed",
        url=url,
        endpoint_id=None,
        owner=None,
        payload={"type": "task.completed", "timestamp": "2026-12-05T10:00:00.000000Z", "data": {"id": 42}},
        status=DeliveryStatus.PENDING,
        attempts=1,
        created_at=now,
        retry_from=now,
    )


async def test_a_post_is_signed_as_standard_webhooks_says() -> None:
    poster = HttpWebhookPoster(allow_private=True)
    try:
        with receiving() as receiver:
            status = await poster.post(delivery(f"{receiver.url}/hooks?x=1"), SECRET, datetime.now(UTC))
            (got,) = receiver.received
    finally:
        await poster.aclose()
    assert status == 200
    assert got.path == "/hooks?x=1"
    assert got.headers["webhook-id"] == "msg_7"
    assert got.headers["content-type"] == "application/json"
    assert Webhook(SECRET).verify(got.body, got.headers) == delivery("x").payload
    with pytest.raises(Exception, match="No matching signature"):
        Webhook("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").verify(got.body, got.headers)


async def test_the_receivers_answer_is_the_result_and_a_redirect_is_not_followed() -> None:
    poster = HttpWebhookPoster(allow_private=True)
    try:
        with receiving() as receiver, receiving() as elsewhere:
            receiver.status = 503
            assert await poster.post(delivery(receiver.url), SECRET, datetime.now(UTC)) == 503
            receiver.status, receiver.location = 302, elsewhere.url
            assert await poster.post(delivery(receiver.url), SECRET, datetime.now(UTC)) == 302
            assert elsewhere.received == []
    finally:
        await poster.aclose()


async def test_a_name_that_resolves_to_a_private_address_is_refused_and_never_called() -> None:
    """``localhost`` passes no submit check, but a name could: what counts is
    what it resolves to when the post is made."""
    poster = HttpWebhookPoster(allow_private=False)
    try:
        with receiving() as receiver:
            for url in (f"http://localhost:{receiver.port}/", receiver.url):
                with pytest.raises(WebhookRefused, match="not a public address"):
                    await poster.post(delivery(url), SECRET, datetime.now(UTC))
            assert receiver.received == []
    finally:
        await poster.aclose()


async def test_the_checked_address_is_the_one_connected_to_and_the_name_is_the_host() -> None:
    poster = HttpWebhookPoster(allow_private=True)
    try:
        with receiving() as receiver:
            await poster.post(delivery(f"http://localhost:{receiver.port}/"), SECRET, datetime.now(UTC))
            assert receiver.received[0].headers["host"] == f"localhost:{receiver.port}"
    finally:
        await poster.aclose()


async def test_a_slow_receiver_times_out_and_a_closed_port_is_unreachable() -> None:
    poster = HttpWebhookPoster(timeout_s=0.5, allow_private=True)
    try:
        with receiving() as receiver:
            receiver.delay_s = 3
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable, match="no answer"):
                await poster.post(delivery(receiver.url), SECRET, datetime.now(UTC))
            assert time.monotonic() - started < 2.5
        with pytest.raises(ServiceUnavailable, match="cannot reach"):
            await poster.post(delivery(f"http://127.0.0.1:{free_port()}/"), SECRET, datetime.now(UTC))
    finally:
        await poster.aclose()


async def test_an_unknown_name_is_unreachable_for_now() -> None:
    poster = HttpWebhookPoster(timeout_s=5, allow_private=True)
    try:
        with pytest.raises(ServiceUnavailable, match="cannot resolve"):
            await asyncio.wait_for(
                poster.post(delivery("http://no-such-host.invalid/"), SECRET, datetime.now(UTC)), 10
            )
    finally:
        await poster.aclose()
