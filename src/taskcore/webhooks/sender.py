"""Sending the deliveries that tasks' ends made, in every worker.

Each worker claims the due deliveries in batches (concurrent workers get
different ones), sends them concurrently, at most ``concurrency`` at a time,
and records each attempt: delivered on a 2xx, else tried again with backoff
until the retry window closes, then FAILED. It runs beside the consume loop
and shares nothing with it but the event loop, so a slow or failing
receiver holds up only other deliveries, never a task: an attempt takes at
most the poster's timeout, and a claimed batch is held (its lease) past that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from datetime import timedelta

from taskcore.errors import ServiceUnavailable
from taskcore.model.webhooks import DeliveryRetries, DueDelivery, WebhookRefused
from taskcore.ports import Clock
from taskcore.ports.telemetry import WebhookTelemetry
from taskcore.ports.webhooks import WebhookOutbox, WebhookPoster
from taskcore.telemetry import NoTelemetry

log = logging.getLogger("taskcore.webhooks")

BATCH = 100
CONCURRENCY = 16
POLL_S = 1.0
LEASE_MARGIN_S = 30.0  # beyond the poster's timeout: a claimed delivery is another sender's only after both


class WebhookSender:
    def __init__(
        self,
        *,
        outbox: WebhookOutbox,
        poster: WebhookPoster,
        clock: Clock,
        retries: DeliveryRetries | None = None,
        callback_secret: str | None = None,
        timeout_s: float = 10.0,
        concurrency: int = CONCURRENCY,
        batch: int = BATCH,
        poll_s: float = POLL_S,
        telemetry: WebhookTelemetry | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """``callback_secret`` signs the deliveries to tasks' own callback URLs
        (``TASKCORE_WEBHOOK_SECRET``); an endpoint's are signed with its own."""
        self._outbox = outbox
        self._poster = poster
        self._clock = clock
        self._retries = retries or DeliveryRetries()
        self._callback_secret = callback_secret
        self._lease = timedelta(seconds=timeout_s + LEASE_MARGIN_S)
        self._sending = asyncio.Semaphore(concurrency)
        self._batch = batch
        self._poll_s = poll_s
        self._telemetry = telemetry or NoTelemetry()
        self._rand = rand

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set; a full batch is followed by the next at once."""
        while not stop.is_set():
            try:
                sent = await self.send_due()
            except ServiceUnavailable as exc:
                log.warning("webhook deliveries wait: %s", exc)
                sent = 0
            except Exception:  # a bug must not end the sending for good
                log.exception("sending webhook deliveries failed")
                sent = 0
            if sent < self._batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)

    async def send_due(self) -> int:
        """Claim the due deliveries (a batch) and send them; how many were claimed."""
        now = self._clock.now()
        due = await self._outbox.claim_deliveries(now, now + self._lease, self._batch)
        if due:
            await asyncio.gather(*(self._send(one) for one in due))
        return len(due)

    async def _send(self, due: DueDelivery) -> None:
        delivery = due.delivery
        async with self._sending:
            at = self._clock.now()
            secret = due.secret if delivery.endpoint_id is not None else self._callback_secret
            status: int | None = None
            try:
                if secret is None:
                    raise WebhookRefused(
                        f"endpoint {delivery.endpoint_id} was removed"
                        if delivery.endpoint_id is not None
                        else "no TASKCORE_WEBHOOK_SECRET to sign it with"
                    )
                status = await self._poster.post(delivery, secret, at)
            except WebhookRefused as exc:
                return await self._failed(due, str(exc), None, give_up=True)
            except ServiceUnavailable as exc:
                return await self._failed(due, str(exc), None, give_up=False)
            if 200 <= status < 300:
                await self._outbox.delivered(delivery.id, self._clock.now(), status)
                self._telemetry.webhook_attempted("delivered")
                return None
            return await self._failed(due, f"the receiver answered HTTP {status}", status, give_up=False)

    async def _failed(self, due: DueDelivery, error: str, status: int | None, *, give_up: bool) -> None:
        delivery = due.delivery
        retry_at = None if give_up else self._retries.next_attempt(delivery, self._clock.now(), self._rand())
        await self._outbox.attempt_failed(delivery.id, error=error, status_code=status, retry_at=retry_at)
        if retry_at is None:
            self._telemetry.webhook_attempted("failed")
            log.warning(
                "webhook %s of task %d to %s FAILED after %d attempt(s): %s",
                delivery.event,
                delivery.task_id,
                delivery.url,
                delivery.attempts,
                error,
            )
        else:
            self._telemetry.webhook_attempted("retried")
            log.info(
                "webhook %s of task %d to %s: attempt %d failed (%s); again at %s",
                delivery.event,
                delivery.task_id,
                delivery.url,
                delivery.attempts,
                error,
                retry_at.isoformat(),
            )
