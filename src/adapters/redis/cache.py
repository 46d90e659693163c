"""The task cache on Redis (standalone or Cluster).

Redis is optional at run time: ``open()`` only builds the client, every call
is bounded by ``timeout_s``, a circuit breaker stops paying that timeout while
Redis is down, and every driver error leaves as ``CacheUnavailable`` so the
caller falls back to the database.

An entry is one string, ``b"<version>:<task as JSON>"``. The version in front
lets the put script compare versions inside Redis without parsing the task;
JSON keeps entries readable in ``redis-cli``. Each entry is a single key, so
Cluster spreads them over its slots with no cross-slot operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from importlib import resources
from typing import Any, TypeVar

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

from taskcore.adapters.redis.breaker import CircuitBreaker
from taskcore.batching import Coalescer
from taskcore.errors import CacheUnavailable, ConfigurationError
from taskcore.model.task import Task

log = logging.getLogger("taskcore.cache.redis")

_PUT_IF_NEWER = (
    resources.files("taskcore.adapters.redis").joinpath("put_if_newer.lua").read_text(encoding="utf-8")
)

# RedisClusterException does not derive from RedisError; TimeoutError (also
# asyncio's) and socket errors the driver did not wrap are OSErrors.
_DRIVER_ERRORS = (RedisError, RedisClusterException, OSError)

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Task)

Client = Redis | RedisCluster
T = TypeVar("T")


def encode_entry(task: Task) -> bytes:
    return b"%d:%b" % (task.version, _ENCODER.encode(task))


def decode_entry(raw: bytes | str) -> Task | None:
    """The task in an entry, or ``None`` when the entry cannot be trusted."""
    data = raw.encode() if isinstance(raw, str) else raw
    head, sep, body = data.partition(b":")
    if not sep or not head.isdigit():
        return None
    try:
        task = _DECODER.decode(body)
    except msgspec.DecodeError:
        return None
    return task if task.version == int(head) else None


def ttl_ms(ttl: timedelta | None) -> int:
    """The script's ttl argument: -1 keeps the entry, 0 is already expired.

    Rounded down, so Redis never keeps an entry longer than asked.
    """
    if ttl is None:
        return -1
    return max(0, ttl // timedelta(milliseconds=1))


class RedisCache:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "taskcore:",
        cluster: bool = False,
        timeout_s: float = 0.25,
        breaker_failures: int = 3,
        breaker_reset_s: float = 5.0,
        batch_linger_s: float = 0.0,
    ) -> None:
        if timeout_s <= 0:
            raise ConfigurationError("redis cache timeout_s must be positive", timeout_s=timeout_s)
        self._url = url
        self._prefix = prefix
        self._cluster = cluster
        self._timeout_s = timeout_s
        self.breaker = CircuitBreaker(breaker_failures, breaker_reset_s)
        self._client: Client | None = None
        self._put_script: AsyncScript | None = None
        self._puts: Coalescer[tuple[str, list[int | bytes]], None] = Coalescer(
            self._put_batch, linger_s=batch_linger_s, name="taskcore-cache-puts"
        )

    def key(self, task_id: int) -> str:
        return f"{self._prefix}task:{task_id}"

    async def open(self) -> None:
        """Build the client without connecting: it connects on first use, so the
        process starts while Redis is unreachable. A malformed URL is a
        configuration mistake and does raise."""
        if self._client is not None:
            return
        # One immediate retry replaces a pooled connection the server dropped;
        # the per-call deadline bounds everything else.
        options: dict[str, Any] = {
            "socket_connect_timeout": self._timeout_s,
            "retry": Retry(NoBackoff(), 1),
            # Standalone, no socket timeout (redis-py's default is 5 s): every
            # call already runs under one deadline (``_run``), and redis-py 8
            # on Python 3.11 turns a socket timeout into an ``asyncio.wait_for``
            # task per command sent. A call cut by the deadline makes redis-py
            # drop that connection, as a socket timeout would.
            "socket_timeout": self._timeout_s if self._cluster else None,
        }
        try:
            if self._cluster:
                client: Client = RedisCluster.from_url(self._url, **options)
            else:
                client = Redis.from_url(self._url, **options)
        except (ValueError, RedisError, RedisClusterException) as exc:
            raise ConfigurationError(f"redis cache url is not usable: {exc}") from exc
        self._put_script = client.register_script(_PUT_IF_NEWER)
        self._client = client

    async def close(self) -> None:
        client, self._client, self._put_script = self._client, None, None
        if client is None:
            return
        try:
            await client.aclose()
        except Exception as exc:
            log.debug("closing the redis cache client failed: %r", exc)

    async def ping(self) -> None:
        """Readiness. Bypasses the breaker's refusal so it reports Redis as it
        is now, and records the outcome so a recovered Redis closes the breaker
        without waiting for the next trial."""
        await self._run("ping", lambda client: client.ping(), gated=False)

    async def get(self, task_id: int) -> Task | None:
        key = self.key(task_id)
        raw = await self._run("get", lambda client: _get(client, key))
        if raw is None:
            return None
        task = decode_entry(raw)
        if task is None or task.id != task_id:
            log.warning("dropping undecodable cache entry %s", key)
            with contextlib.suppress(CacheUnavailable):
                await self._run("delete", lambda client: client.delete(key))
            return None
        return task

    async def put(self, task: Task, ttl: timedelta | None) -> None:
        script = self._put_script
        if script is None:
            raise CacheUnavailable("redis cache is not open")
        args: list[int | bytes] = [task.version, encode_entry(task), ttl_ms(ttl)]
        if self._cluster:  # keys live on different nodes: one call each
            await self._run("put", lambda client: script(keys=[self.key(task.id)], args=args, client=client))
            return
        # Puts made while a batch is on its way go out together as the next
        # pipeline: one round trip and one write for many tasks.
        await self._puts.call((self.key(task.id), args))

    async def _put_batch(self, batch: list[tuple[str, list[int | bytes]]]) -> list[None]:
        script = self._put_script
        if script is None:
            raise CacheUnavailable("redis cache is not open")

        async def pipelined(client: Client) -> None:
            # EVALSHA by hand: a Script object in a pipeline makes redis-py ask
            # SCRIPT EXISTS first, a second round trip for every pipeline. The
            # script is loaded once; a Redis that lost it (restart, SCRIPT
            # FLUSH) answers NOSCRIPT to every put, and the batch is sent again
            # after loading it (the puts are compare-and-set, so a repeat is harmless).
            for attempt in (1, 2):
                pipe = client.pipeline(transaction=False)
                for key, args in batch:
                    pipe.evalsha(script.sha, 1, key, *args)
                try:
                    await pipe.execute()
                    return
                except NoScriptError:
                    if attempt == 2:
                        raise
                    await client.script_load(script.script)

        await self._run("put", pipelined)
        return [None] * len(batch)

    async def _run(self, operation: str, call: Callable[[Client], Awaitable[T]], *, gated: bool = True) -> T:
        """The adapter's edge: one deadline, the breaker, and error translation."""
        client = self._client
        if client is None:
            raise CacheUnavailable("redis cache is not open")
        if gated and not self.breaker.allow():
            raise CacheUnavailable(
                "redis cache circuit is open", operation=operation, retry_in_s=self.breaker.retry_in_s
            )
        try:
            async with asyncio.timeout(self._timeout_s):
                # self._cluster, not isinstance(client, RedisCluster): that
                # check goes through typing's Protocol machinery in redis-py 8
                # and was 14% of the API's CPU on a cached read.
                if self._cluster:
                    # Learn the slot map first: commands issued while it is
                    # unknown are routed without their key and, when many start
                    # at once, fail inside redis-py (seen with 8.1).
                    await client.initialize()
                result = await call(client)
        except Exception as exc:
            if not isinstance(exc, _DRIVER_ERRORS):
                # Not an outage we expect but a defect in the driver or here:
                # still no reason to fail the request, but worth a trace.
                log.warning("redis cache %s failed unexpectedly", operation, exc_info=True)
            self.breaker.record_failure()
            raise CacheUnavailable(
                f"redis cache {operation} failed: {_describe(exc)}", operation=operation
            ) from exc
        self.breaker.record_success()
        return result


def _describe(exc: BaseException) -> str:
    """redis-py's exception repr says only "network:ConnectionError"; and an
    expired deadline has no message at all."""
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


async def _get(client: Client, key: str) -> bytes | str | None:
    try:
        raw: bytes | str | None = await client.get(key)
    except ResponseError as exc:
        if str(exc).startswith("WRONGTYPE"):
            return b""  # a key of another type: undecodable, so dropped like one
        raise
    return raw
