"""``AsyncClient``: the API from asyncio (or trio) code, ``Client``'s twin method for method.

The two differ only in their I/O: the requests, their retry rules and the
reading of answers are ``calls.py``'s, shared. Sleeping and the clock are
anyio's, so that it runs under either event loop (as httpx does) and on an
event loop's time, which a test can make fake.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx
from httpx_sse import EventSource

from taskcore.client import calls
from taskcore.client.auth import AsyncTokenSource, BearerToken
from taskcore.client.errors import Conflict, NotFound
from taskcore.client.models import (
    Batch,
    BulkResult,
    CatchUp,
    DeliveryPage,
    QueueState,
    RegisteredWebhook,
    Schedule,
    Step,
    Submitted,
    Task,
    TaskDetail,
    TaskPage,
    TaskSpec,
    TaskStatus,
    WebhookDelivery,
    WebhookEndpoint,
    Workflow,
)
from taskcore.client.retries import Attempts, Retries

T = TypeVar("T")


class _AsyncSession:
    """The HTTP connection pool, the token, the timeouts and the retry policy of one client."""

    def __init__(
        self,
        base_url: str | None,
        *,
        token: AsyncTokenSource | None,
        timeout: float | httpx.Timeout,
        retries: Retries,
        http_client: httpx.AsyncClient | None,
        transport: httpx.AsyncBaseTransport | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        self.base_url = calls.base_url(base_url)
        token = token if token is not None else calls.token_from_env()
        # No token: whatever auth an http_client passed in has.
        self.auth = BearerToken(token) if token is not None else httpx.USE_CLIENT_DEFAULT
        self.timeout = httpx.Timeout(timeout)
        self.retries = retries
        self.headers = {"User-Agent": calls.user_agent(), **(headers or {})}
        self.owns_http = http_client is None
        self.http = http_client or httpx.AsyncClient(transport=transport)

    async def send(self, call: calls.Call[T]) -> T:
        tries = self._attempts(call)
        while True:
            try:
                response = await self.http.request(
                    call.method,
                    self.base_url + call.path,
                    params=call.params,
                    content=call.body,
                    headers={**self.headers, **call.headers},
                    auth=self.auth,
                    timeout=calls.timeout_of(call, self.timeout),
                )
            except httpx.TransportError as exc:
                await anyio.sleep(tries.after_error(exc))
                continue
            delay = tries.after_response(response)
            if delay is None:
                return calls.result(call, response, tries)
            await anyio.sleep(delay)

    async def events(self, task_id: int, *, progress: bool = True) -> AsyncIterator[Task]:
        stream = calls.EventStream(task_id, progress=progress)
        probe = stream.probe
        tries: Attempts | None = None  # failures in a row; any event resets it
        while True:
            try:
                async with self.http.stream(
                    "GET",
                    self.base_url + stream.path,
                    headers={**self.headers, **stream.headers()},
                    auth=self.auth,
                    timeout=calls.stream_timeout(self.timeout),
                ) as response:
                    if response.status_code == 204:  # the final state was seen already
                        return
                    if not response.is_success:
                        await response.aread()
                        tries = tries or self._attempts(probe)
                        delay = tries.after_response(response)
                        if delay is None:
                            calls.result(probe, response, tries)
                        await anyio.sleep(delay or 0.0)
                        continue
                    began = False  # taskcore's streams open with their retry field at least
                    async for sse in EventSource(response).aiter_sse():
                        began, tries = True, None
                        task = stream.read(sse.event, sse.data, sse.id, sse.retry)
                        if task is not None:
                            yield task
                            if task.is_final:
                                return
                    if not began:
                        raise httpx.RemoteProtocolError("the event stream ended before it began")
            except httpx.TransportError as exc:
                tries = tries or self._attempts(probe)
                await anyio.sleep(tries.after_error(exc))
                continue
            # Ended without a final state (after TASKCORE_EVENTS_MAX_S): go on where it stopped.
            await anyio.sleep(stream.reconnect_s)

    def _attempts(self, call: calls.Call[Any]) -> Attempts:
        return Attempts(call.method, call.path, call.resend, self.retries, anyio.current_time)

    async def aclose(self) -> None:
        if self.owns_http:
            await self.http.aclose()


class AsyncClient:
    """The taskcore HTTP API, asynchronously; as ``Client``, with ``await``.

    ``base_url`` defaults to ``$TASKCORE_URL`` (else ``http://127.0.0.1:8005``)
    and ``token`` to ``$TASKCORE_TOKEN``; ``token`` may be a function, asked
    before each attempt, for tokens that rotate. ``http_client`` (yours to
    close) or ``transport`` replace the ``httpx.AsyncClient`` it would make, for
    proxies, TLS settings, or tests. Use it as a context manager, or
    ``aclose()`` it. ``token`` may also be a coroutine function.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: AsyncTokenSource | None = None,
        timeout: float | httpx.Timeout = calls.DEFAULT_TIMEOUT,
        retries: Retries | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._session = _AsyncSession(
            base_url,
            token=token,
            timeout=timeout,
            retries=retries or Retries(),
            http_client=http_client,
            transport=transport,
            headers=headers,
        )
        self.workflows = AsyncWorkflows(self._session)
        self.queues = AsyncQueues(self._session)
        self.schedules = AsyncSchedules(self._session)
        self.webhooks = AsyncWebhooks(self._session)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (not those of an ``http_client`` you passed in)."""
        await self._session.aclose()

    async def submit(
        self,
        type: str,
        input: Any,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        unique_key: str | None = None,
        after: Iterable[int] = (),
        run_anyway: bool = False,
        idempotency_key: str | None = None,
        tags: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
    ) -> Task:
        """Submit a task; it is stored PENDING and runs in the background.

        Each call sends an ``Idempotency-Key`` (a new UUID unless given) and
        keeps it for all its retries, so a retry after a lost answer gets the
        task the first attempt created: one call, at most one task. Give your
        own key to make a submit safe to repeat across calls (or processes).
        With a ``unique_key`` held by an unfinished task, that task is the
        answer (``submit_detailed`` says so). ``tags`` (up to 16) label the
        task for ``list(tag=...)``; ``metadata`` (a JSON object, up to 4 KiB)
        is kept and returned with it. ``callback_url`` is POSTed the task when
        it ends (signed as Standard Webhooks says with the deployment's
        ``TASKCORE_WEBHOOK_SECRET``; a private address is ``Unprocessable``
        unless the deployment allows it).
        """
        return (
            await self.submit_detailed(
                type,
                input,
                delay=delay,
                run_at=run_at,
                priority=priority,
                queue=queue,
                unique_key=unique_key,
                after=after,
                run_anyway=run_anyway,
                idempotency_key=idempotency_key,
                tags=tags,
                metadata=metadata,
                callback_url=callback_url,
            )
        ).task

    async def submit_detailed(
        self,
        type: str,
        input: Any,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        unique_key: str | None = None,
        after: Iterable[int] = (),
        run_anyway: bool = False,
        idempotency_key: str | None = None,
        tags: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
    ) -> Submitted:
        """As ``submit``, with whether the task was deduplicated or the answer replayed."""
        spec = TaskSpec(
            type=type,
            input=input,
            delay=delay,
            run_at=run_at,
            priority=priority,
            queue=queue,
            unique_key=unique_key,
            after=tuple(after),
            run_anyway=run_anyway,
            tags=tuple(tags),
            metadata=metadata,
            callback_url=callback_url,
        )
        return await self._session.send(calls.submit(spec, idempotency_key))

    async def submit_many(self, tasks: Iterable[TaskSpec]) -> Batch:
        """Up to 1,000 tasks in one request, all stored or none (a bad one is an
        ``Unprocessable`` naming its position). There is no Idempotency-Key for
        batches, so a batch whose answer was lost is not sent again: the
        ``TransportError`` means it may or may not have been stored."""
        return await self._session.send(calls.submit_many(tasks))

    async def get(self, task_id: int) -> Task:
        return await self._session.send(calls.get(task_id))

    async def get_detail(self, task_id: int) -> TaskDetail:
        """The task with its input, owner, the running attempt's start and lease, and its
        last 20 attempts (``attempt_log``): what a task page shows and a poll does not need."""
        return await self._session.send(calls.get_detail(task_id))

    async def wait(self, task_id: int, timeout: float | None = None) -> Task:  # noqa: ASYNC109
        """The task once it is final, or as it is when ``timeout`` seconds have
        passed (``None``: no limit); look at ``task.is_final``. Long polls, so
        the answer comes as soon as the task ends."""
        polls = calls.Polls(timeout, anyio.current_time)
        while True:
            task = await self._session.send(calls.get(task_id, wait_s=polls.next_wait()))
            pause = polls.pause(task)
            if pause is None:
                return task
            await anyio.sleep(pause)

    def events(self, task_id: int, *, progress: bool = True) -> AsyncIterator[Task]:
        """The task at each new state (Server-Sent Events), ending after the final one.

        While it runs, each progress report its handler makes is the task again
        with the report's ``progress``, ``progress_message`` and ``progress_at``
        (``progress=False``: states only).

        A dropped stream is resumed where it stopped (``Last-Event-ID``), so no
        state is missed or repeated. Nothing is sent until the first ``anext()``. Leaving the loop
        early: wrap it in ``contextlib.aclosing`` to close the stream at once.
        """
        return self._session.events(task_id, progress=progress)

    async def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        tag: str | Iterable[str] | None = None,
        owner: str | None = None,
        page_size: int = 100,
        cursor: str | None = None,
    ) -> AsyncIterator[Task]:
        """Every task that matches, newest first, a page at a time as you iterate.

        Pages are keyset pages: tasks submitted meanwhile are newer than all of
        them, so none repeats or is skipped. ``tag``: only tasks with this tag
        (several: with all of them). ``owner``: only that owner's tasks (one
        other than the caller needs ``tasks:admin``). ``list_page`` gives one page and
        its cursor, for callers that stop and resume.
        """
        while True:
            page = await self.list_page(
                status=status, type=type, queue=queue, tag=tag, owner=owner, limit=page_size, cursor=cursor
            )
            for task in page.items:
                yield task
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def list_page(
        self,
        *,
        status: TaskStatus | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        tag: str | Iterable[str] | None = None,
        owner: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of tasks (``limit`` 1 to 500); pass its ``next_cursor`` as ``cursor`` for the next."""
        return await self._session.send(
            calls.list_page(
                status=status, type=type, queue=queue, tag=tag, owner=owner, limit=limit, cursor=cursor
            )
        )

    async def cancel(self, task_id: int) -> Task:
        """Cancel a PENDING or PROCESSING task; ``Conflict`` if it already ended.

        Sent again after a lost answer; if that answer is a 409 because the
        first attempt had cancelled it, the cancelled task is returned."""
        try:
            return await self._session.send(calls.cancel(task_id))
        except Conflict as exc:
            if exc.resent_after_lost_answer:
                task = await self.get(task_id)
                if task.status is TaskStatus.CANCELLED:
                    return task
            raise

    async def retry(self, task_id: int) -> Task:
        """Run a FAILED or CANCELLED task again with fresh attempts; ``Conflict`` otherwise."""
        return await self._session.send(calls.retry(task_id))

    async def cancel_matching(
        self,
        *,
        status: TaskStatus | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        owner: str | None = None,
        tags: Iterable[str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> BulkResult:
        """Cancel every PENDING or PROCESSING task the filter matches (at least one filter).

        Goes on call after call (10,000 tasks each) until none is left; with
        ``limit``, stops after that many and returns ``next_cursor`` to go on
        from (``cursor=``). The counts add up every call's.
        """
        filters = {
            "status": status,
            "type": type,
            "queue": queue,
            "created_after": created_after,
            "created_before": created_before,
            "owner": owner,
            "tags": None if tags is None else builtins.list(tags),
        }
        return await self._bulk("cancel", filters, limit, cursor)

    async def retry_matching(
        self,
        *,
        status: TaskStatus | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        owner: str | None = None,
        tags: Iterable[str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> BulkResult:
        """Run every FAILED or CANCELLED task the filter matches again; as ``cancel_matching``."""
        filters = {
            "status": status,
            "type": type,
            "queue": queue,
            "created_after": created_after,
            "created_before": created_before,
            "owner": owner,
            "tags": None if tags is None else builtins.list(tags),
        }
        return await self._bulk("retry", filters, limit, cursor)

    async def _bulk(
        self, action: str, filters: dict[str, Any], limit: int | None, cursor: str | None
    ) -> BulkResult:
        total = None
        while True:
            step = calls.MAX_BULK if limit is None else min(limit, calls.MAX_BULK)
            one = await self._session.send(calls.bulk(action, filters, limit=step, cursor=cursor))
            total = calls.add_up(total, one)
            limit = None if limit is None else limit - step
            if one.next_cursor is None or limit == 0:
                return total
            cursor = one.next_cursor


class AsyncWorkflows:
    """``client.workflows``: graphs of steps submitted at once."""

    def __init__(self, session: _AsyncSession) -> None:
        self._session = session

    async def submit(
        self,
        steps: Iterable[Step],
        *,
        name: str | None = None,
        tags: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Workflow:
        """Every step stored in one transaction, or none (a bad one is an
        ``Unprocessable`` naming it). Not sent again after a lost answer.
        ``tags`` and ``metadata`` go to every step, with each ``Step``'s own added."""
        return await self._session.send(calls.submit_workflow(steps, name, tags, metadata))

    async def get(self, workflow_id: int) -> Workflow:
        return await self._session.send(calls.get_workflow(workflow_id))

    async def cancel(self, workflow_id: int) -> Workflow:
        """Cancel every step not ended yet; safe to repeat."""
        return await self._session.send(calls.cancel_workflow(workflow_id))


class AsyncQueues:
    """``client.queues``: the named queues (needs ``tasks:admin``)."""

    def __init__(self, session: _AsyncSession) -> None:
        self._session = session

    async def list(self) -> builtins.list[QueueState]:
        return await self._session.send(calls.list_queues())

    async def pause(self, name: str) -> QueueState:
        """No task of the queue starts until it is resumed; submits are still taken."""
        return await self._session.send(calls.pause_queue(name))

    async def resume(self, name: str) -> QueueState:
        return await self._session.send(calls.resume_queue(name))


class AsyncSchedules:
    """``client.schedules``: periodic schedules, by cron expression or interval."""

    def __init__(self, session: _AsyncSession) -> None:
        self._session = session

    async def create(
        self,
        name: str,
        type: str,
        input: Any = None,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        every_s: int | None = None,
        queue: str | None = None,
        priority: int | None = None,
        catch_up: CatchUp | None = None,
        catch_up_limit: int | None = None,
    ) -> Schedule:
        """A schedule firing on ``cron`` (in ``timezone``) or every ``every_s``
        seconds; ``Conflict`` if the name is taken. Not sent again after a lost answer."""
        return await self._session.send(
            calls.create_schedule(
                name,
                type,
                input,
                cron=cron,
                timezone=timezone,
                every_s=every_s,
                queue=queue,
                priority=priority,
                catch_up=catch_up,
                catch_up_limit=catch_up_limit,
            )
        )

    async def list(self) -> builtins.list[Schedule]:
        return await self._session.send(calls.list_schedules())

    async def get(self, name: str) -> Schedule:
        return await self._session.send(calls.get_schedule(name))

    async def delete(self, name: str) -> None:
        """The tasks it created stay. Sent again after a lost answer; a 404 then
        means the first attempt deleted it, and is not raised."""
        try:
            await self._session.send(calls.delete_schedule(name))
        except NotFound as exc:
            if not exc.resent_after_lost_answer:
                raise

    async def pause(self, name: str) -> Schedule:
        return await self._session.send(calls.pause_schedule(name))

    async def resume(self, name: str) -> Schedule:
        return await self._session.send(calls.resume_schedule(name))


class AsyncWebhooks:
    """``client.webhooks``: endpoints told when tasks end, and the deliveries made to them
    (and to tasks' own ``callback_url``). An owner sees only its own; an admin's endpoints
    hear every task."""

    def __init__(self, session: _AsyncSession) -> None:
        self._session = session

    async def create(
        self,
        url: str,
        *,
        events: Iterable[str] = (),
        description: str | None = None,
        secret: str | None = None,
    ) -> RegisteredWebhook:
        """Register ``url`` for ``events`` (``task.completed``, ``task.failed``,
        ``task.cancelled``; none: all). The answer's ``secret`` (a ``whsec_`` key,
        ``secret`` if given) signs the deliveries and is shown only here: keep it.
        A private address is ``Unprocessable`` unless the deployment allows it.
        Not sent again after a lost answer (a second endpoint would be registered)."""
        return await self._session.send(calls.create_webhook(url, events, description, secret))

    async def list(self) -> builtins.list[WebhookEndpoint]:
        """The caller's endpoints, without their secrets."""
        return await self._session.send(calls.list_webhooks())

    async def delete(self, endpoint_id: int) -> None:
        """Its deliveries still to send end FAILED; another owner's is ``NotFound``.
        Sent again after a lost answer; a 404 then means the first attempt deleted it,
        and is not raised."""
        try:
            await self._session.send(calls.delete_webhook(endpoint_id))
        except NotFound as exc:
            if not exc.resent_after_lost_answer:
                raise

    async def deliveries(
        self,
        *,
        status: str | None = None,
        task_id: int | None = None,
        endpoint_id: int | None = None,
        page_size: int = 50,
        before: int | None = None,
    ) -> AsyncIterator[WebhookDelivery]:
        """Every delivery that matches, newest first, a page at a time as you iterate.
        ``status``: ``PENDING``, ``DELIVERED`` or ``FAILED`` (given up; ``last_error`` says why)."""
        while True:
            page = await self.deliveries_page(
                status=status, task_id=task_id, endpoint_id=endpoint_id, limit=page_size, before=before
            )
            for delivery in page.items:
                yield delivery
            if page.next_before is None:
                return
            before = page.next_before

    async def deliveries_page(
        self,
        *,
        status: str | None = None,
        task_id: int | None = None,
        endpoint_id: int | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> DeliveryPage:
        """One page of deliveries (``limit`` 1 to 200); its ``next_before`` is the next one's ``before``."""
        return await self._session.send(
            calls.deliveries_page(
                status=status, task_id=task_id, endpoint_id=endpoint_id, limit=limit, before=before
            )
        )

    async def retry_delivery(self, delivery_id: int) -> WebhookDelivery:
        """Send a FAILED delivery again, at once, with a new retry window and the same
        ``webhook-id``; ``NotFound`` unless it is one of the caller's FAILED ones. Not
        sent again after a lost answer."""
        return await self._session.send(calls.retry_delivery(delivery_id))
