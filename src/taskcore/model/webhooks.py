"""Completion webhooks: who is told when a task ends, and how a delivery is retried.

A task's end (COMPLETED, FAILED, CANCELLED) becomes one *delivery* per
receiver: the task's own ``callback_url``, and each endpoint its owner
registered for that event. Deliveries are rows stored in the same
transaction as the task's final state, so none is lost and none is made for
an end that did not happen; workers send them (Standard Webhooks: a
``webhook-id`` that stays the same across retries, a timestamp, an HMAC
signature) and retry with backoff for up to a day before marking them
FAILED, where ``GET /webhooks/deliveries`` shows them.

Receivers are called from inside the deployment's network, so an address
that is not a public one (loopback, private, link-local, ...) is refused
unless the operator allows it: a submit must not be able to make the
workers call the cloud's metadata service or an internal admin API.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import secrets
import urllib.parse
from datetime import datetime, timedelta
from typing import Any

import msgspec

from taskcore.errors import InvalidInput, TaskcoreError
from taskcore.model.status import TaskStatus

EVENTS = ("task.completed", "task.failed", "task.cancelled")
"""The events an endpoint can subscribe to: one per final status."""

MAX_URL_LENGTH = 2048
MAX_ENDPOINTS = 100  # per owner: each end fans out to every matching one


def event_of(status: TaskStatus) -> str:
    """The event a task's final ``status`` is: ``task.completed`` for COMPLETED."""
    return f"task.{status.value.lower()}"


class DeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"  # to send, or to send again at next_attempt_at
    DELIVERED = "DELIVERED"  # a 2xx answer
    FAILED = "FAILED"  # given up: retried for the whole retry window, or refused outright


class WebhookRefused(TaskcoreError):
    """A receiver this deployment will not call (an address that is not public,
    unless ``TASKCORE_WEBHOOK_ALLOW_PRIVATE``); retrying cannot help."""


class WebhookNotFound(TaskcoreError):
    """No such endpoint or delivery of the caller's (404)."""


class WebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A receiver an owner registered for some events of its tasks."""

    id: int
    url: str
    events: tuple[str, ...]
    secret: str  # whsec_<base64>: the Standard Webhooks signing key
    owner: str | None = None  # None: registered with auth off (or by an admin for everyone's tasks)
    description: str | None = None
    created_at: datetime


class NewEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    events: tuple[str, ...]
    secret: str
    owner: str | None
    description: str | None
    created_at: datetime


class WebhookDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """One event for one receiver, and how sending it went."""

    id: int
    task_id: int
    event: str
    url: str
    endpoint_id: int | None  # None: the task's own callback_url
    owner: str | None  # who may list it: the endpoint's owner, or the task's for its callback_url
    payload: Any  # the Standard Webhooks body: {"type", "timestamp", "data": the task at its end}
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    retry_from: datetime  # the retry window's start: created_at, or when it was redelivered
    next_attempt_at: datetime | None = None  # when PENDING
    delivered_at: datetime | None = None
    last_status: int | None = None  # the receiver's last HTTP status, if it answered
    last_error: str | None = None

    @property
    def message_id(self) -> str:
        """``webhook-id``: the same on every attempt, so a receiver can drop repeats."""
        return f"msg_{self.id}"


class DueDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A claimed delivery and the secret to sign it with (its endpoint's, or
    ``None``: the deployment's callback secret)."""

    delivery: WebhookDelivery
    secret: str | None


class DeliveryQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A page of deliveries, newest first; ``before`` is the last id of the previous page."""

    owner: str | None = None  # None: everyone's
    status: DeliveryStatus | None = None
    task_id: int | None = None
    endpoint_id: int | None = None
    limit: int = 50
    before: int | None = None


class DeliveryRetries(msgspec.Struct, frozen=True, kw_only=True):
    """When a failed attempt is tried again: exponential backoff with jitter
    (``base_s`` doubling up to ``cap_s``), for ``window_s`` after the event;
    an attempt that would fall later is not made and the delivery is FAILED.
    The defaults give a dozen attempts over a day, close to the Standard
    Webhooks schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h)."""

    base_s: float = 5.0
    cap_s: float = 3 * 3600.0
    window_s: float = 86_400.0

    def next_attempt(self, delivery: WebhookDelivery, now: datetime, rand: float) -> datetime | None:
        """When to try ``delivery`` again after its attempt number
        ``delivery.attempts`` failed at ``now``; ``None``: give up."""
        ceiling = min(self.cap_s, self.base_s * 4 ** max(delivery.attempts - 1, 0))
        at = now + timedelta(seconds=ceiling * (0.5 + rand / 2))
        if at > delivery.retry_from + timedelta(seconds=self.window_s):
            return None
        return at


class CallbackPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a submit may name a ``callback_url``: only where the deployment
    signs callbacks (``TASKCORE_WEBHOOK_SECRET``), and to public addresses
    unless private ones are allowed."""

    signing: bool = True
    allow_private: bool = False

    def check(self, url: object) -> str:
        if not self.signing:
            raise InvalidInput(
                "callback_url is not accepted here: set TASKCORE_WEBHOOK_SECRET (a whsec_ key) so that"
                " callbacks can be signed, or register an endpoint with POST /webhooks",
                callback_url=url,
            )
        return check_url(url, allow_private=self.allow_private, field="callback_url")


def new_secret() -> str:
    """A fresh signing key in the Standard Webhooks form (``whsec_`` and 24 random bytes in base64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def check_secret(secret: str) -> str:
    """``secret`` if it is a usable Standard Webhooks key, else ``InvalidInput``."""
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw + "==", validate=False)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise InvalidInput("a webhook secret is whsec_ and at least 16 bytes in base64")
    return secret


def check_events(events: object) -> tuple[str, ...]:
    """The events, each known and once, in the order given; all three when empty."""
    if not isinstance(events, list | tuple) or not all(isinstance(event, str) for event in events):
        raise InvalidInput("events is a list of event names", events=events)
    unknown = [event for event in events if event not in EVENTS]
    if unknown:
        raise InvalidInput(
            f"unknown event {unknown[0]!r}; the events are {', '.join(EVENTS)}", events=unknown[0]
        )
    return tuple(dict.fromkeys(events)) or EVENTS


def check_url(url: object, *, allow_private: bool, field: str = "url") -> str:
    """``url`` if a worker may call it: absolute ``http``/``https`` with a host,
    at most 2048 characters, and, unless ``allow_private``, not naming an
    address that is not public. A host name is checked again when it is
    resolved, just before each attempt (``public_address``)."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"{field} is a URL of at most {MAX_URL_LENGTH} characters", **{field: url})
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{field} must be an absolute http or https URL, got {url!r}", **{field: url})
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise InvalidInput(f"{field} has an invalid port: {url!r}", **{field: url}) from None
    if parts.username or parts.password:
        raise InvalidInput(f"{field} must not carry credentials", **{field: url})
    if not allow_private:
        host = parts.hostname
        if host == "localhost" or host.endswith(".localhost"):
            raise InvalidInput(_private_message(field, host), **{field: url})
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return url  # a name: checked when resolved
        if not is_public(address):
            raise InvalidInput(_private_message(field, host), **{field: url})
    return url


def _private_message(field: str, host: str) -> str:
    return (
        f"{field} names {host}, which is not a public address; webhooks to loopback, private and"
        " link-local addresses are refused unless TASKCORE_WEBHOOK_ALLOW_PRIVATE=true"
    )


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """An address on the public internet: not loopback, private, link-local
    (the cloud metadata service), shared (CGNAT), multicast, reserved or
    unspecified; an IPv4-mapped IPv6 address is judged as its IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def public_address(host: str, addresses: list[str], *, allow_private: bool) -> str:
    """Of the addresses ``host`` resolved to, the one to connect to: the first,
    if every one is public (a name with one private address among public ones
    is refused, or a retry could land on it); ``WebhookRefused`` otherwise."""
    if not addresses:
        raise WebhookRefused(f"{host} resolved to no address")
    if not allow_private:
        for text in addresses:
            if not is_public(ipaddress.ip_address(text)):
                raise WebhookRefused(
                    f"{host} resolves to {text}, which is not a public address"
                    " (TASKCORE_WEBHOOK_ALLOW_PRIVATE=true allows it)"
                )
    return addresses[0]
