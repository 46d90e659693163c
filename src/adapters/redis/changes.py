"""The change feed on Redis pub/sub.

Every process publishes batches of changes on one channel and the API
processes subscribe to it, each with one dedicated connection whatever the
number of waiting requests. Pub/sub keeps nothing: a subscriber that
reconnects misses what was published meanwhile, which the feed's contract
allows (waiters re-read the database on their own schedule).

With Redis Cluster the client talks to the node in the URL: PUBLISH and
SUBSCRIBE are not keyed, and the cluster forwards messages to every node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from taskcore.errors import ChangeFeedUnavailable, ConfigurationError
from taskcore.model.changes import TaskChange, decode_changes, encode_changes

log = logging.getLogger("taskcore.changes.redis")

_DRIVER_ERRORS = (RedisError, OSError)  # TimeoutError is an OSError
POLL_S = 1.0  # how often an idle subscription checks its connection


class RedisChangeFeed:
    def __init__(
        self,
        url: str,
        *,
        channel: str = "taskcore:changes",
        timeout_s: float = 0.25,
        health_check_s: float = 5.0,
    ) -> None:
        if timeout_s <= 0:
            raise ConfigurationError("redis change feed timeout_s must be positive", timeout_s=timeout_s)
        self._url = url
        self.channel = channel
        self._timeout_s = timeout_s
        self._health_check_s = health_check_s
        self._client: Redis | None = None

    async def open(self) -> None:
        """Build the client without connecting, so the process starts while Redis is down."""
        if self._client is not None:
            return
        options: dict[str, Any] = {
            "socket_connect_timeout": self._timeout_s,
            "socket_keepalive": True,
            # A subscription is idle most of the time: no read deadline, a
            # PING every health_check_s finds a dead connection instead.
            "health_check_interval": self._health_check_s,
        }
        try:
            self._client = Redis.from_url(self._url, **options)
        except (ValueError, RedisError) as exc:
            raise ConfigurationError(f"redis change feed url is not usable: {exc}") from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception as exc:
                log.debug("closing the redis change feed client failed: %r", exc)

    def _require(self) -> Redis:
        if self._client is None:
            raise ChangeFeedUnavailable("redis change feed is not open")
        return self._client

    async def ping(self) -> None:
        client = self._require()
        try:
            async with asyncio.timeout(self._timeout_s):
                await client.ping()
        except Exception as exc:
            raise ChangeFeedUnavailable(f"redis change feed ping failed: {exc!r}") from exc

    async def announce(self, changes: Sequence[TaskChange]) -> None:
        if not changes:
            return
        client = self._require()
        try:
            async with asyncio.timeout(self._timeout_s):
                await client.publish(self.channel, encode_changes(changes))
        except Exception as exc:
            if not isinstance(exc, _DRIVER_ERRORS):
                log.warning("redis change feed publish failed unexpectedly", exc_info=True)
            raise ChangeFeedUnavailable(f"redis change feed publish failed: {exc!r}") from exc

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[TaskChange]]:
        pubsub = self._require().pubsub(ignore_subscribe_messages=True)
        try:
            try:
                async with asyncio.timeout(self._timeout_s * 4):
                    await pubsub.subscribe(self.channel)
            except Exception as exc:
                raise ChangeFeedUnavailable(f"redis change feed subscribe failed: {exc!r}") from exc
            yield self._receive(pubsub)
        finally:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed since redis 8
            except Exception as exc:
                log.debug("closing a redis subscription failed: %r", exc)

    @staticmethod
    async def _receive(pubsub: PubSub) -> AsyncIterator[TaskChange]:
        while True:
            try:
                message = await pubsub.get_message(timeout=POLL_S)
            except Exception as exc:
                raise ChangeFeedUnavailable(f"redis subscription lost: {exc!r}") from exc
            if message is None or message.get("type") != "message":
                continue
            for change in decode_changes(message["data"]):
                yield change
