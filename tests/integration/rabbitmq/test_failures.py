"""Broker trouble: every failure is a ``QueueUnavailable`` in bounded time, and work resumes by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from taskcore.adapters.rabbitmq import RabbitQueue
from taskcore.errors import QueueUnavailable
from tests.integration.faults.proxies import TcpProxy
from tests.integration.rabbitmq.conftest import MakeQueue
from tests.requirements import require_tool, unavailable

pytestmark = pytest.mark.integration

RECOVERS_S = 15.0


@pytest.fixture
def proxy(amqp_server_url: str) -> Iterator[TcpProxy]:
    with TcpProxy(amqp_server_url) as proxy:
        yield proxy


async def until_ready(queue: RabbitQueue, seconds: float = RECOVERS_S) -> None:
    async with asyncio.timeout(seconds):
        while True:
            try:
                await queue.ping()
                return
            except QueueUnavailable:
                await asyncio.sleep(0.1)


async def until_down(queue: RabbitQueue) -> None:
    async with asyncio.timeout(5):
        while True:
            try:
                await queue.ping()
            except QueueUnavailable:
                return
            await asyncio.sleep(0.02)


async def test_unreachable_broker_fails_open_within_the_connect_timeout(make_queue: MakeQueue) -> None:
    queue = await make_queue("amqp://guest:guest@127.0.0.1:1/", open=False, connect_timeout_s=2.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(QueueUnavailable):
        await queue.open()
    assert loop.time() - start < 2.5
    await asyncio.sleep(0)
    tasks = [getattr(task.get_coro(), "__qualname__", "") for task in asyncio.all_tasks()]
    reconnecting = [name for name in tasks if "connection_factory" in name]
    assert not reconnecting, "a reconnect loop outlived the failed open"
    with pytest.raises(QueueUnavailable):
        await queue.ping()


async def test_wrong_credentials_fail_open(make_queue: MakeQueue, amqp_server_url: str) -> None:
    url = amqp_server_url.replace("guest:guest@", "guest:not-the-password@")
    queue = await make_queue(url, open=False, connect_timeout_s=3.0)
    with pytest.raises(QueueUnavailable):
        await queue.open()


async def test_every_operation_refuses_before_open(make_queue: MakeQueue) -> None:
    queue = await make_queue(open=False)
    with pytest.raises(QueueUnavailable):
        await queue.ping()
    with pytest.raises(QueueUnavailable):
        await queue.publish(b"1")
    with pytest.raises(QueueUnavailable):
        await queue.depth()
    with pytest.raises(QueueUnavailable):
        async with queue.consume(prefetch=1):
            pass


async def test_closing_the_queue_wakes_a_waiting_consumer(queue: RabbitQueue) -> None:
    async with queue.consume(prefetch=1) as consumer:
        waiting = asyncio.ensure_future(consumer.next())
        await asyncio.sleep(0.1)
        await queue.close()
        with pytest.raises(QueueUnavailable):
            await asyncio.wait_for(waiting, 2)


async def test_publish_fails_within_the_timeout_while_the_broker_is_away_then_recovers(
    make_queue: MakeQueue, proxy: TcpProxy
) -> None:
    queue = await make_queue(proxy.url, publish_timeout_s=1.0, reconnect_interval_s=0.5)
    async with queue.consume(prefetch=1) as consumer:
        proxy.cut()
        await until_down(queue)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(QueueUnavailable):
            await queue.publish(b"lost")
        assert loop.time() - start < 1.5
        with pytest.raises(QueueUnavailable):
            await queue.depth()

        proxy.restore()
        await until_ready(queue)
        await queue.publish(b"after")
        delivery = await asyncio.wait_for(consumer.next(), RECOVERS_S)
        assert delivery.body == b"after"
        await delivery.ack()


async def test_a_delivery_from_a_cut_connection_is_redelivered_and_settling_it_is_harmless(
    make_queue: MakeQueue, proxy: TcpProxy
) -> None:
    queue = await make_queue(proxy.url, reconnect_interval_s=0.5)
    await queue.publish(b"in flight")
    async with queue.consume(prefetch=1) as consumer:
        stale = await asyncio.wait_for(consumer.next(), 5)
        proxy.cut()
        await until_down(queue)
        await stale.ack()  # the channel is gone: logged, not raised
        proxy.restore()
        again = await asyncio.wait_for(consumer.next(), RECOVERS_S)
        assert again.body == b"in flight"
        await again.ack()


INSTALL_RABBITMQCTL = (
    "install RabbitMQ's command line tools where the test runs, able to reach the broker"
    " (`apt-get install -y rabbitmq-server`, sharing the broker's Erlang cookie)"
)


async def _rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "--quiet", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        unavailable(f"rabbitmqctl {args[0]} failed: {err.decode().strip()[:200]}; {INSTALL_RABBITMQCTL}")
    return out.decode()


async def close_connection_named(name: str) -> None:
    """Have the broker close one connection, found by its client-provided name; nobody else's."""
    listing = await _rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    marker = f'{{"connection_name","{name}"}}'
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if marker in line]
    assert len(pids) == 1, f"expected one connection named {name!r}, found {len(pids)}"
    await _rabbitmqctl("close_connection", pids[0], "taskcore test: cut while idle")


async def test_idle_consumer_resubscribes_after_the_broker_closes_its_connection(
    make_queue: MakeQueue, queue_name: str
) -> None:
    require_tool("rabbitmqctl", INSTALL_RABBITMQCTL)  # before any connection is made
    worker = await make_queue(connection_name=f"{queue_name}.worker", reconnect_interval_s=0.5)
    publisher = await make_queue(connection_name=f"{queue_name}.publisher")
    async with worker.consume(prefetch=1) as consumer:
        await close_connection_named(f"{queue_name}.worker")
        await publisher.publish(b"wake up")
        delivery = await asyncio.wait_for(consumer.next(), RECOVERS_S)
        assert delivery.body == b"wake up"
        await delivery.ack()
    await until_ready(worker)
    await worker.publish(b"publishing works again")
