"""Completion webhooks: the rules of model/webhooks.py, and /webhooks and
callback_url over HTTP (the app and its embedded worker in the test's event
loop, on fake time; the receiver is the test's, the real HTTP poster has
tests against real sockets in tests/integration/webhooks/)."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from dependency_injector import providers
from litestar import Litestar
from standardwebhooks import Webhook

from taskcore import HandlerRegistry, register_builtins
from taskcore.entrypoints.container import Container, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from taskcore.errors import InvalidInput
from taskcore.model.webhooks import (
    CallbackPolicy,
    WebhookDelivery,
    WebhookRefused,
    check_events,
    check_secret,
    check_url,
    is_public,
    new_secret,
    public_address,
)

from .test_auth import SECRET as JWT_SECRET
from .test_auth import bearer, token
from .test_http import eventually, on_loop_time, serving

CALLBACK_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


# -- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/",
        "http://api.localhost/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
        "http://100.64.0.1/",  # shared address space (CGNAT)
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
        "http://224.0.0.1/",
    ],
)
def test_addresses_that_are_not_public_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InvalidInput, match="not a public address"):
        check_url(url, allow_private=False)
    assert check_url(url, allow_private=True) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "example.com/hook",
        "http:///nohost",
        "https://u:p@example.com/",
        "http://x:99999/",
    ],
)
def test_only_absolute_http_urls_without_credentials(url: str) -> None:
    with pytest.raises(InvalidInput):
        check_url(url, allow_private=True)


def test_public_urls_and_names_pass_the_submit_check() -> None:
    for url in (
        "https://hooks.example.com/in?x=1",
        "http://93.184.216.34:8080/",
        "https://[2606:4700::1111]/",
    ):
        assert check_url(url, allow_private=False) == url
    assert check_url("x" * 10 and "https://example.com/" + "a" * 2000, allow_private=False)
    with pytest.raises(InvalidInput, match="2048"):
        check_url("https://example.com/" + "a" * 2048, allow_private=False)


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    assert (
        public_address("example.com", ["93.184.216.34", "2606:2800::1"], allow_private=False)
        == "93.184.216.34"
    )
    with pytest.raises(WebhookRefused, match=r"10\.0\.0\.7"):
        public_address("sneaky.example.com", ["93.184.216.34", "10.0.0.7"], allow_private=False)
    assert public_address("db.internal", ["10.0.0.7"], allow_private=True) == "10.0.0.7"
    with pytest.raises(WebhookRefused, match="no address"):
        public_address("nothing.example.com", [], allow_private=True)
    assert not is_public(ipaddress.ip_address("::ffff:10.0.0.1"))


def test_events_and_secrets() -> None:
    assert check_events([]) == ("task.completed", "task.failed", "task.cancelled")
    assert check_events(["task.failed", "task.failed"]) == ("task.failed",)
    with pytest.raises(InvalidInput, match=r"unknown event 'task\.started'"):
        check_events(["task.started"])
    made = new_secret()
    assert made.startswith("whsec_")
    assert check_secret(made) == made
    with pytest.raises(InvalidInput, match="at least 16 bytes"):
        check_secret("whsec_c2hvcnQ=")
    with pytest.raises(InvalidInput, match="TASKCORE_WEBHOOK_SECRET"):
        CallbackPolicy(signing=False).check("https://example.com/")


# -- over HTTP --------------------------------------------------------------------------------


class Receiver:
    """The receiving end, verifying each post as a receiver would (with the
    standardwebhooks package); answers ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.received: list[tuple[WebhookDelivery, dict[str, Any]]] = []

    async def aclose(self) -> None:
        """The process closes its poster at the end, as it does the HTTP one."""

    async def post(self, delivery: WebhookDelivery, secret: str, at: datetime) -> int:
        from taskcore.adapters.webhooks.poster import signed_request  # the real signing

        body, headers = signed_request(delivery, secret, at)
        # What Webhook.verify checks but the timestamp's distance from the
        # wall clock (the app runs on fake time): the signature.
        signed_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
        expected = Webhook(secret).sign(headers["webhook-id"], signed_at, body.decode())
        assert headers["webhook-signature"] == expected
        assert headers["webhook-id"] == delivery.message_id
        self.received.append((delivery, msgspec.json.decode(body)))
        return self.status


def app_with(receiver: Receiver, **settings: Any) -> tuple[Container, Litestar]:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0.05)

    @registry.handler(max_attempts=1)
    async def explode(_: str) -> None:
        raise RuntimeError("handler bug")

    container = on_loop_time(build_container(load_settings({}, **settings), registry))
    container.webhook_poster.override(providers.Object(receiver))
    return container, create_app(container, embedded_worker=True)


@pytest.mark.looptime
async def test_a_registered_endpoint_and_a_callback_hear_each_end_signed() -> None:
    receiver = Receiver()
    _, app = app_with(receiver, webhook_secret=CALLBACK_SECRET, webhook_allow_private=True)
    async with serving(app) as client:
        created = await client.post(
            "/webhooks", json={"url": "http://127.0.0.1:9/in", "events": ["task.failed"]}
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["secret"].startswith("whsec_")
        assert created.headers["location"] == f"/webhooks/{endpoint['id']}"
        listed = (await client.get("/webhooks")).json()["items"]
        assert listed == [{k: v for k, v in endpoint.items() if k != "secret"}]

        ok = (
            await client.post("/tasks/", json={"input_data": "abc", "callback_url": "http://127.0.0.1:9/cb"})
        ).json()
        assert ok["callback_url"] == "http://127.0.0.1:9/cb"
        bad = (await client.post("/tasks/", json={"type": "explode", "input_data": "x"})).json()
        await eventually(lambda: len(receiver.received) == 2, within=30)

        by_url = {d.url: (d, body) for d, body in receiver.received}
        callback, callback_body = by_url["http://127.0.0.1:9/cb"]
        assert callback_body["type"] == "task.completed"
        assert callback_body["data"]["id"] == ok["id"]
        assert callback_body["data"]["result"] == "cba"
        hook, hook_body = by_url["http://127.0.0.1:9/in"]
        assert (hook_body["type"], hook_body["data"]["id"]) == ("task.failed", bad["id"])
        assert "handler bug" in hook_body["data"]["error"]

        page = (await client.get("/webhooks/deliveries")).json()
        assert [d["status"] for d in page["items"]] == ["DELIVERED", "DELIVERED"]
        assert page["next_before"] is None
        assert {d["message_id"] for d in page["items"]} == {callback.message_id, hook.message_id}
        assert (await client.delete(f"/webhooks/{endpoint['id']}")).status_code == 204
        assert (await client.delete(f"/webhooks/{endpoint['id']}")).status_code == 404
        assert (await client.get("/webhooks")).json()["items"] == []


@pytest.mark.looptime
async def test_a_failed_delivery_is_listed_and_can_be_sent_again() -> None:
    receiver = Receiver()
    receiver.status = 410
    _, app = app_with(receiver, webhook_allow_private=True, webhook_retry_window_s=1)
    async with serving(app) as client:
        await client.post("/webhooks", json={"url": "http://127.0.0.1:9/gone"})
        await client.post("/tasks/", json={"input_data": "abc"})
        failed: list[Any] = []

        async def listed() -> None:
            while not failed:
                failed.extend((await client.get("/webhooks/deliveries?status=FAILED")).json()["items"])
                await asyncio.sleep(0.1)

        await asyncio.wait_for(listed(), 30)
        assert failed[0]["last_error"] == "the receiver answered HTTP 410"
        assert failed[0]["last_status"] == 410
        receiver.status = 200
        again = await client.post(f"/webhooks/deliveries/{failed[0]['id']}/retry")
        assert again.status_code == 200
        assert again.json()["status"] == "PENDING"
        await eventually(lambda: len(receiver.received) >= 2, within=30)
        assert receiver.received[-1][0].message_id == failed[0]["message_id"]
        assert (await client.post(f"/webhooks/deliveries/{failed[0]['id']}/retry")).status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/webhooks", {"url": "http://127.0.0.1/x"}, "not a public address"),
        ("/webhooks", {"url": "http://169.254.169.254/"}, "not a public address"),
        ("/webhooks", {"url": "ftp://example.com/"}, "http or https"),
        ("/webhooks", {"url": "https://example.com/", "events": ["task.started"]}, "events"),
        ("/webhooks", {"url": "https://example.com/", "secret": "whsec_c2hvcnQ="}, "16 bytes"),
        ("/webhooks", {"url": "https://example.com/", "extra": 1}, "extra"),
        ("/tasks/", {"input_data": "a", "callback_url": "http://10.0.0.1/"}, "not a public address"),
        ("/tasks/", {"input_data": "a", "callback_url": "nope"}, "http or https"),
    ],
)
async def test_refused_receivers_are_422_and_store_nothing(
    path: str, body: dict[str, Any], message: str
) -> None:
    receiver = Receiver()
    container, app = app_with(receiver, webhook_secret=CALLBACK_SECRET)
    async with serving(app) as client:
        response = await client.post(path, json=body)
        assert response.status_code == 422, response.text
        assert message in response.text
    db = container.database()
    assert db.webhook_endpoints == {}
    assert db.tasks == {}


async def test_a_callback_url_needs_the_deployments_secret() -> None:
    _, app = app_with(Receiver())
    async with serving(app) as client:
        response = await client.post(
            "/tasks/", json={"input_data": "a", "callback_url": "https://example.com/"}
        )
        assert response.status_code == 422
        assert "TASKCORE_WEBHOOK_SECRET" in response.json()["detail"]


async def test_an_owner_sees_and_removes_only_its_own_endpoints_and_deliveries() -> None:
    _, app = app_with(Receiver(), auth="jwt", jwt_secret=JWT_SECRET)
    alice, bob = bearer(token("alice")), bearer(token("bob"))
    admin = bearer(token("ops", scope="tasks:read tasks:write tasks:admin"))
    async with serving(app) as client:
        mine = (await client.post("/webhooks", json={"url": "https://a.example.com/"}, headers=alice)).json()
        await client.post("/webhooks", json={"url": "https://b.example.com/"}, headers=bob)
        everyone = (
            await client.post("/webhooks", json={"url": "https://ops.example.com/"}, headers=admin)
        ).json()
        assert [e["url"] for e in (await client.get("/webhooks", headers=alice)).json()["items"]] == [
            "https://a.example.com/"
        ]
        assert len((await client.get("/webhooks", headers=admin)).json()["items"]) == 3
        assert (await client.delete(f"/webhooks/{mine['id']}", headers=bob)).status_code == 404
        assert (await client.delete(f"/webhooks/{everyone['id']}", headers=alice)).status_code == 404
        assert (await client.delete(f"/webhooks/{mine['id']}", headers=alice)).status_code == 204
        reader = bearer(token("alice", scope="tasks:read"))
        assert (
            await client.post("/webhooks", json={"url": "https://a.example.com/"}, headers=reader)
        ).status_code == 403
