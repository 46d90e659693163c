"""The behaviour the worker relies on from any ``TaskQueue``.

Subclass ``QueueContract`` next to fixtures ``queue`` (an opened adapter) and
``dead_letters`` (an async callable returning every ``(body, reason)``
dead-lettered so far). The memory adapter and the RabbitMQ adapter run the
same tests, so the embedded mode and the unit tests cannot drift from the
broker. Waits are short for "nothing arrives" and generous for "it arrives".

Every wait and every elapsed time here is on the event loop's clock
(``asyncio.sleep``, ``wait_for``, ``loop.time()``), never the wall clock: the
memory adapter runs the contract under ``looptime`` with its delays due by
``LoopClock``, so there these waits are fake time and the results do not
depend on the machine's speed; against a real broker they are real seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from taskcore.ports import Consumer, Delivery, TaskQueue

DeadLetters = Callable[[], Awaitable[list[tuple[bytes, str]]]]

QUIET_S = 0.3  # long enough for a broker round trip: "nothing arrived" means nothing is coming
ARRIVES_S = 5.0


async def within(consumer: Consumer, seconds: float = ARRIVES_S) -> Delivery | None:
    try:
        return await asyncio.wait_for(consumer.next(), seconds)
    except TimeoutError:
        return None


async def take(consumer: Consumer) -> Delivery:
    delivery = await within(consumer)
    assert delivery is not None, f"no delivery within {ARRIVES_S} s"
    return delivery


async def assert_empty(queue: TaskQueue) -> None:
    async with queue.consume(prefetch=1) as consumer:
        leftover = await within(consumer, QUIET_S)
        assert leftover is None, f"unexpected delivery {leftover.body!r}"


class QueueContract:
    async def test_publish_then_consume_gets_the_body(self, queue: TaskQueue) -> None:
        await queue.publish(b"42")
        async with queue.consume(prefetch=1) as consumer:
            delivery = await take(consumer)
            assert delivery.body == b"42"
            await delivery.ack()

    async def test_ack_removes_the_message(self, queue: TaskQueue) -> None:
        await queue.publish(b"1")
        async with queue.consume(prefetch=1) as consumer:
            await (await take(consumer)).ack()
        await assert_empty(queue)

    async def test_requeue_redelivers(self, queue: TaskQueue) -> None:
        await queue.publish(b"1")
        async with queue.consume(prefetch=1) as consumer:
            await (await take(consumer)).requeue()
            again = await take(consumer)
            assert again.body == b"1"
            await again.ack()
        await assert_empty(queue)

    async def test_unsettled_delivery_goes_back_when_the_consumer_exits(self, queue: TaskQueue) -> None:
        await queue.publish(b"1")
        async with queue.consume(prefetch=1) as consumer:
            assert (await take(consumer)).body == b"1"
        async with queue.consume(prefetch=1) as consumer:
            again = await take(consumer)
            assert again.body == b"1"
            await again.ack()

    async def test_unsettled_deliveries_go_back_in_their_original_order(self, queue: TaskQueue) -> None:
        for n in range(4):
            await queue.publish(str(n).encode())
        async with queue.consume(prefetch=3) as consumer:
            held = [await take(consumer) for _ in range(3)]
            assert [d.body for d in held] == [b"0", b"1", b"2"]
        received = []
        async with queue.consume(prefetch=4) as consumer:
            for _ in range(4):
                delivery = await take(consumer)
                received.append(delivery.body)
                await delivery.ack()
        assert received == [b"0", b"1", b"2", b"3"]

    async def test_prefetch_bounds_unsettled_deliveries(self, queue: TaskQueue) -> None:
        for n in range(5):
            await queue.publish(str(n).encode())
        async with queue.consume(prefetch=2) as consumer:
            first, second = await take(consumer), await take(consumer)
            third = asyncio.ensure_future(consumer.next())
            try:
                await asyncio.sleep(QUIET_S)
                assert not third.done(), "a third delivery while two are unsettled"
                await first.ack()
                delivery = await asyncio.wait_for(third, ARRIVES_S)
            finally:
                third.cancel()
            assert {first.body, second.body, delivery.body} == {b"0", b"1", b"2"}
            await second.ack()
            await delivery.ack()

    async def test_two_consumers_share_the_messages(self, queue: TaskQueue) -> None:
        for n in range(4):
            await queue.publish(str(n).encode())
        async with queue.consume(prefetch=1) as one, queue.consume(prefetch=1) as two:
            a, b = await take(one), await take(two)
            assert a.body != b.body
            await a.ack()
            await b.ack()
            rest = [await take(one), await take(two)]
            assert {a.body, b.body} | {d.body for d in rest} == {b"0", b"1", b"2", b"3"}
            for delivery in rest:
                await delivery.ack()

    async def test_delayed_message_arrives_after_its_delay(self, queue: TaskQueue) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await queue.publish(b"later", delay=timedelta(seconds=0.6))
        await queue.publish(b"now")
        async with queue.consume(prefetch=2) as consumer:
            now = await take(consumer)
            assert now.body == b"now"
            await now.ack()
            later = await take(consumer)
            elapsed = loop.time() - start
            assert later.body == b"later"
            assert 0.6 <= elapsed < 0.6 + ARRIVES_S
            await later.ack()

    async def test_a_short_delay_is_not_stuck_behind_a_long_one(self, queue: TaskQueue) -> None:
        await queue.publish(b"slow", delay=timedelta(seconds=30))
        await queue.publish(b"fast", delay=timedelta(seconds=0.2))
        async with queue.consume(prefetch=1) as consumer:
            fast = await within(consumer, 3.0)
            assert fast is not None, "the short delay waited behind the long one"
            assert fast.body == b"fast"
            await fast.ack()

    async def test_dead_letter_keeps_body_and_reason_and_removes_the_message(
        self, queue: TaskQueue, dead_letters: DeadLetters
    ) -> None:
        await queue.publish(b"not a task id")
        async with queue.consume(prefetch=1) as consumer:
            await (await take(consumer)).dead_letter("not a task id: b'x'")
        assert await dead_letters() == [(b"not a task id", "not a task id: b'x'")]
        await assert_empty(queue)

    async def test_settling_twice_is_harmless(self, queue: TaskQueue, dead_letters: DeadLetters) -> None:
        await queue.publish(b"1")
        await queue.publish(b"2")
        async with queue.consume(prefetch=2) as consumer:
            acked = await take(consumer)
            await acked.ack()
            await acked.ack()
            await acked.requeue()
            await acked.dead_letter("too late")
            requeued = await take(consumer)
            await requeued.requeue()
            await requeued.ack()  # ignored: the message is already back in the queue
            again = await take(consumer)
            assert (acked.body, requeued.body, again.body) == (b"1", b"2", b"2")
            await again.ack()
        assert await dead_letters() == []
        await assert_empty(queue)

    async def test_one_consumer_gets_messages_in_publish_order(self, queue: TaskQueue) -> None:
        bodies = [str(n).encode() for n in range(10)]
        for body in bodies:
            await queue.publish(body)
        received = []
        async with queue.consume(prefetch=3) as consumer:
            for _ in bodies:
                delivery = await take(consumer)
                received.append(delivery.body)
                await delivery.ack()
        assert received == bodies

    async def test_higher_priorities_are_delivered_first_fifo_within_one(self, queue: TaskQueue) -> None:
        for body, priority in [(b"low-1", 0), (b"low-2", 0), (b"mid", 4), (b"high-1", 9), (b"high-2", 9)]:
            await queue.publish(body, priority=priority)
        received = []
        async with queue.consume(prefetch=1) as consumer:
            for _ in range(5):
                delivery = await take(consumer)
                received.append(delivery.body)
                await delivery.ack()
        assert received == [b"high-1", b"high-2", b"mid", b"low-1", b"low-2"]

    async def test_a_delayed_message_keeps_its_priority_once_due(self, queue: TaskQueue) -> None:
        await queue.publish(b"low-1")
        await queue.publish(b"high", delay=timedelta(seconds=0.2), priority=9)
        await queue.publish(b"low-2")
        await asyncio.sleep(0.2 + QUIET_S * 2)  # due, and moved out of its delay bucket
        received = []
        async with queue.consume(prefetch=1) as consumer:
            for _ in range(3):
                delivery = await take(consumer)
                received.append(delivery.body)
                await delivery.ack()
        assert received == [b"high", b"low-1", b"low-2"]

    # -- a message that wakes several tasks (``model/messages.py``) ----------------------

    async def test_a_message_waking_several_tasks_is_one_delivery_per_task(self, queue: TaskQueue) -> None:
        await queue.publish(b"1 2 3")
        async with queue.consume(prefetch=1) as consumer:
            parts = [await take(consumer) for _ in range(3)]
            assert [part.body for part in parts] == [b"1", b"2", b"3"]
            for part in parts:
                await part.ack()
        await assert_empty(queue)

    async def test_a_message_waking_several_tasks_is_held_until_every_part_is_settled(
        self, queue: TaskQueue
    ) -> None:
        await queue.publish(b"1 2")
        async with queue.consume(prefetch=1) as consumer:
            first, second = await take(consumer), await take(consumer)
            await first.ack()
        # The consumer went away with the second part unsettled: the whole message comes back.
        async with queue.consume(prefetch=1) as consumer:
            assert [(await take(consumer)).body for _ in range(2)] == [b"1", b"2"]
        assert second.body == b"2"

    async def test_a_requeued_part_gives_the_whole_message_back_once_all_are_settled(
        self, queue: TaskQueue
    ) -> None:
        await queue.publish(b"1 2 3")
        async with queue.consume(prefetch=1) as consumer:
            one, two, three = [await take(consumer) for _ in range(3)]
            await one.ack()
            await two.requeue()
            assert await within(consumer, QUIET_S) is None  # three is still out
            await three.ack()
            again = [await take(consumer) for _ in range(3)]
            assert [part.body for part in again] == [b"1", b"2", b"3"]
            for part in again:
                await part.ack()
        await assert_empty(queue)

    async def test_a_dead_lettered_part_goes_aside_alone(
        self, queue: TaskQueue, dead_letters: DeadLetters
    ) -> None:
        await queue.publish(b"1 2 3")
        async with queue.consume(prefetch=1) as consumer:
            one, two, three = [await take(consumer) for _ in range(3)]
            await one.ack()
            await two.dead_letter("no task with id 2")
            await two.ack()  # ignored: settled
            await three.ack()
        assert await dead_letters() == [(b"2", "no task with id 2")]
        await assert_empty(queue)

    async def test_a_message_that_is_not_a_list_of_ids_is_handed_out_whole(self, queue: TaskQueue) -> None:
        await queue.publish(b"1 two 3")
        await queue.publish(b"7 alone")
        async with queue.consume(prefetch=2) as consumer:
            whole, alone = await take(consumer), await take(consumer)
            assert (whole.body, alone.body) == (b"1 two 3", b"7 alone")
            await whole.ack()
            await alone.ack()
        await assert_empty(queue)
