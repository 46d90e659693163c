"""``WebhookPoster`` over httpx, signed as the Standard Webhooks spec says.

The signature (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``:
HMAC-SHA256 over ``id.timestamp.body``) is made by the ``standardwebhooks``
package, the spec's reference implementation, so receivers verify it with
any Standard Webhooks library.

Server-side request forgery: the receiver's name is resolved here, every
address it resolves to must be public (``model/webhooks.py``), and the
request goes to the address that was checked (the URL's host is replaced
by it; the Host header and TLS's server name keep the name, so virtual
hosting and certificate checks work as usual). Resolving again in the
HTTP client would let a name that answers a public address to the check and
a private one to the connection (DNS rebinding) through. Redirects are not
followed (a 3xx is a failed attempt), for the same reason.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.parse
from datetime import datetime

import httpx
import msgspec
from standardwebhooks import Webhook

from taskcore.errors import ServiceUnavailable
from taskcore.model.webhooks import WebhookDelivery, public_address

USER_AGENT = "taskcore-webhooks/1"


def signed_request(delivery: WebhookDelivery, secret: str, at: datetime) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``delivery`` as of ``at``, signed with ``secret``."""
    body = msgspec.json.encode(delivery.payload)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery.message_id, at, body.decode()),
    }
    return body, headers


class HttpWebhookPoster:
    def __init__(self, *, timeout_s: float = 10.0, allow_private: bool = False) -> None:
        self._timeout_s = timeout_s
        self._allow_private = allow_private
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout_s),
                follow_redirects=False,
                # never through a proxy of the environment, which would resolve the name itself
                trust_env=False,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def post(self, delivery: WebhookDelivery, secret: str, at: datetime) -> int:
        body, headers = signed_request(delivery, secret, at)
        try:
            async with asyncio.timeout(self._timeout_s):
                url, extensions = await self._pinned(delivery.url, headers)
                async with self._http().stream(
                    "POST", url, content=body, headers=headers, extensions=extensions
                ) as response:
                    return response.status_code  # the body is not read: only the status matters
        except TimeoutError:
            raise ServiceUnavailable(f"no answer from {delivery.url} within {self._timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"cannot reach {delivery.url}: {type(exc).__name__}: {exc}") from exc

    async def _pinned(self, url: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        """``url`` with its host replaced by the checked address it resolves
        to; the name goes in ``headers`` (Host) and the TLS server name."""
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ServiceUnavailable(f"cannot resolve {host}: {exc}") from exc
        address = public_address(host, [str(info[4][0]) for info in found], allow_private=self._allow_private)
        literal = f"[{address}]" if ":" in address else address
        netloc = f"{literal}:{parts.port}" if parts.port else literal
        headers["host"] = parts.netloc.rsplit("@", 1)[-1]
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), extensions
