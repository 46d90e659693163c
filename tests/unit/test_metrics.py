"""Prometheus metrics: the adapter, ``/metrics`` on the API, the worker's probe port and liveness."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from litestar import Litestar, get
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from taskcore import HandlerRegistry, TaskProcessor, Worker, register_builtins
from taskcore.adapters.memory import MemoryQueue
from taskcore.adapters.prometheus import PrometheusTelemetry, QueueDepthPoller, shared_metrics_dir
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.http.metrics import http_metrics
from taskcore.entrypoints.settings import load_settings
from taskcore.entrypoints.worker_probe import ProbeServer
from taskcore.errors import QueueUnavailable
from taskcore.work.worker import Liveness

from .test_http import Client, eventually, on_loop_time, serving

SECRET = "a-test-secret-that-is-long-enough-for-hs256!"

DEFAULT = {"queue": "default"}
REVERSE = {"type": "reverse", "queue": "default"}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


# -- the adapter -----------------------------------------------------------------------


def test_the_adapter_counts_into_the_families_by_type() -> None:
    registry = CollectorRegistry()
    telemetry = PrometheusTelemetry(registry)
    telemetry.task_submitted("reverse")
    telemetry.task_deduplicated("reverse")
    telemetry.task_claimed("reverse", 0.3)
    telemetry.task_ran("reverse", 0.02)
    telemetry.task_settled("reverse", "completed")
    telemetry.task_settled("reverse", "retried")
    telemetry.task_settled("resize", "failed")
    telemetry.message_dead_lettered("invalid_message")
    telemetry.tasks_in_flight(4)
    telemetry.tasks_recovered("released", 2)
    telemetry.cache_read("hit")
    telemetry.cache_read("miss")
    telemetry.cache_read("error")
    telemetry.cache_write_failed()
    get = registry.get_sample_value
    assert get("taskcore_tasks_submitted_total", REVERSE) == 1
    assert get("taskcore_tasks_deduplicated_total", REVERSE) == 1
    assert get("taskcore_task_queue_wait_seconds_count", REVERSE) == 1
    assert get("taskcore_task_queue_wait_seconds_bucket", {**REVERSE, "le": "0.5"}) == 1
    assert get("taskcore_task_run_seconds_sum", REVERSE) == pytest.approx(0.02)
    assert get("taskcore_tasks_completed_total", REVERSE) == 1
    assert get("taskcore_tasks_retried_total", REVERSE) == 1
    assert get("taskcore_tasks_failed_total", {"type": "resize", "queue": "default"}) == 1
    assert get("taskcore_messages_dead_lettered_total", {"reason": "invalid_message"}) == 1
    assert get("taskcore_tasks_in_flight") == 4
    assert get("taskcore_sweeper_recoveries_total", {"action": "released"}) == 2
    assert (get("taskcore_cache_hits_total"), get("taskcore_cache_misses_total")) == (1, 1)
    assert get("taskcore_cache_errors_total", {"operation": "read"}) == 1
    assert get("taskcore_cache_errors_total", {"operation": "write"}) == 1


def test_adapters_on_one_registry_share_its_metrics() -> None:
    registry = CollectorRegistry()
    PrometheusTelemetry(registry).task_submitted("a")
    PrometheusTelemetry(registry).task_submitted("a")  # no "duplicated timeseries" error
    assert registry.get_sample_value("taskcore_tasks_submitted_total", {"type": "a", "queue": "default"}) == 2


class Depths:
    def __init__(self) -> None:
        self.ready, self.dead = 7, 2
        self.available = True

    async def depth(self, queue: str = "default") -> int:
        if not self.available:
            raise QueueUnavailable("down")
        return self.ready

    async def dead_letter_depth(self, queue: str = "default") -> int:
        return self.dead


@pytest.mark.looptime
async def test_the_poller_reads_the_depths_and_shows_nan_when_unknown() -> None:
    registry = CollectorRegistry()
    telemetry = PrometheusTelemetry(registry)
    assert registry.get_sample_value("taskcore_queue_depth_messages", DEFAULT) is None  # never read yet
    queue = Depths()
    poller = QueueDepthPoller(queue, telemetry, interval_s=0.01)
    poller.start()
    try:
        await eventually(lambda: registry.get_sample_value("taskcore_queue_depth_messages", DEFAULT) == 7)
        assert registry.get_sample_value("taskcore_dead_letter_depth_messages", DEFAULT) == 2
        queue.available = False
        await eventually(
            lambda: math.isnan(registry.get_sample_value("taskcore_queue_depth_messages", DEFAULT) or 0)
        )
        assert math.isnan(registry.get_sample_value("taskcore_dead_letter_depth_messages", DEFAULT) or 0)
        queue.available, queue.ready = True, 3
        await eventually(lambda: registry.get_sample_value("taskcore_queue_depth_messages", DEFAULT) == 3)
    finally:
        await poller.stop()


def test_multiprocess_mode_merges_every_process(tmp_path: Path) -> None:
    """Two API processes count into PROMETHEUS_MULTIPROC_DIR; a third renders the sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = textwrap.dedent(
        """
        from taskcore.adapters.prometheus import PrometheusTelemetry
        telemetry = PrometheusTelemetry()
        telemetry.task_submitted("reverse")
        telemetry.tasks_in_flight(2)
        """
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=60)
    render = "from taskcore.adapters.prometheus import render; print(render()[0].decode())"
    text = subprocess.run(
        [sys.executable, "-c", render], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    assert value(text, "taskcore_tasks_submitted_total", type="reverse", queue="default") == 2


# -- /metrics on the API ---------------------------------------------------------------


@asynccontextmanager
async def api(**settings: Any) -> AsyncIterator[Client]:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    container = on_loop_time(build_container(load_settings({}, **settings), registry))
    async with serving(create_app(container, embedded_worker=True, default_auth="jwt")) as client:
        yield client


def bearer() -> dict[str, str]:
    token = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 600, "scope": "tasks:read tasks:write"}, SECRET
    )
    return {"authorization": f"Bearer {token}"}


@pytest.mark.looptime
async def test_the_api_counts_requests_by_route_template_and_status() -> None:
    route = "/tasks/{task_id}"
    async with api(jwt_secret=SECRET) as client:
        before = (await client.get("/metrics")).text
        assert (await client.get("/tasks/1")).status_code == 401  # raised by the auth middleware
        assert (await client.get("/tasks/123456", headers=bearer())).status_code == 404
        submitted = await client.post("/tasks/", json={"input_data": "abc"}, headers=bearer())
        assert submitted.status_code == 201
        response = await client.get("/metrics")  # no token needed
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=")
        after = response.text

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    common = {"app_name": "taskcore", "method": "GET", "path": route}
    assert delta("taskcore_http_requests_total", status_code="401", **common) == 1
    assert delta("taskcore_http_requests_total", status_code="404", **common) == 1
    assert delta("taskcore_http_request_duration_seconds_count", status_code="404", **common) == 1
    post = {"app_name": "taskcore", "method": "POST", "path": "/tasks", "status_code": "201"}
    assert delta("taskcore_http_requests_total", **post) == 1
    assert delta("taskcore_tasks_submitted_total", type="reverse", queue="default") == 1
    scrapes = {"app_name": "taskcore", "method": "GET", "path": "/metrics", "status_code": "200"}
    assert value(after, "taskcore_http_requests_total", **scrapes) == 0  # scrapes are not counted
    assert (
        samples(after)[
            ("taskcore_http_requests_in_progress", frozenset({**common, "status_code": "200"}.items()))
        ]
        == 0
    )


async def test_the_api_counts_server_errors_and_times_each_request() -> None:
    """On real time: the middleware times requests with ``time.perf_counter``,
    and a real 0.05 s sleep takes at least that long however busy the machine."""
    in_progress = ("taskcore_http_requests_in_progress", frozenset({
        "app_name": "taskcore", "method": "GET", "path": "/slow", "status_code": "200"
    }.items()))  # fmt: skip

    @get("/boom", sync_to_thread=False)
    def boom() -> None:
        raise RuntimeError("a defect")

    @get("/slow")
    async def slow() -> float:
        """Sleeps, and answers how many /slow requests the gauge says are in progress."""
        await asyncio.sleep(0.05)
        return samples(generate_latest().decode())[in_progress]

    app = Litestar([boom, slow], middleware=[http_metrics()], debug=False)
    async with serving(app) as client:
        before = generate_latest().decode()
        assert (await client.get("/boom")).status_code == 500
        assert (await client.get("/boom")).status_code == 500
        answered = await client.get("/slow")
        assert (answered.status_code, answered.json()) == (200, 1)  # itself, while it ran
        after = generate_latest().decode()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    boom_500 = {"app_name": "taskcore", "method": "GET", "path": "/boom", "status_code": "500"}
    slow_200 = {"app_name": "taskcore", "method": "GET", "path": "/slow", "status_code": "200"}
    assert delta("taskcore_http_requests_error_total", **boom_500) == 2
    assert delta("taskcore_http_requests_total", **boom_500) == 2
    assert delta("taskcore_http_request_duration_seconds_count", **slow_200) == 1
    assert delta("taskcore_http_request_duration_seconds_sum", **slow_200) >= 0.05
    assert samples(after)[in_progress] == 0


@pytest.mark.looptime
async def test_metrics_are_not_in_the_api_schema() -> None:
    async with api(jwt_secret=SECRET) as client:
        schema = (await client.get("/docs/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


# -- worker liveness -------------------------------------------------------------------


class DyingQueue(MemoryQueue):
    """A queue whose consumer fails on the first ``next()``."""

    @asynccontextmanager
    async def consume(self, prefetch: int, queues: Collection[str] = ("default",)) -> AsyncIterator[Any]:
        async with super().consume(prefetch, queues) as consumer:

            async def broken() -> None:
                raise RuntimeError("the channel went away for good")

            consumer.next = broken
            yield consumer


@pytest.mark.looptime
async def test_liveness_follows_the_consumer(processor: TaskProcessor, queue: MemoryQueue) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(processor=processor, queue=queue, stall_s=0.2, monotonic=loop.time)
    assert worker.liveness() == Liveness(False, "not consuming yet")
    running = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: worker.liveness().consuming)
        queue.available = False  # the broker connection is down...
        cut_off = loop.time()
        await asyncio.sleep(0.1)
        assert worker.liveness().consuming  # ...not for long enough yet
        await eventually(lambda: not worker.liveness().consuming)
        assert 0.2 < loop.time() - cut_off <= 0.2 + 0.05 + 0.01  # stall_s, noticed by the next 0.05 s tick
        assert worker.liveness().detail.startswith("cut off from the broker for")
        queue.available = True  # reconnected
        await eventually(lambda: worker.liveness().consuming)
    finally:
        worker.stop()
        assert worker.liveness() == Liveness(False, "stopping")
        await asyncio.wait_for(running, 5)


async def test_liveness_reports_a_consume_loop_that_died(processor: TaskProcessor) -> None:
    worker = Worker(processor=processor, queue=DyingQueue(), stall_s=5)
    with pytest.raises(RuntimeError):
        await worker.run()
    live = worker.liveness()
    assert not live.consuming
    assert live.detail == "the consume loop ended: RuntimeError: the channel went away for good"


@pytest.mark.looptime
async def test_liveness_reports_a_blocked_event_loop(processor: TaskProcessor, queue: MemoryQueue) -> None:
    now = [100.0]
    worker = Worker(processor=processor, queue=queue, stall_s=1, monotonic=lambda: now[0])
    running = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: worker.liveness().consuming)
        now[0] += 5  # five seconds pass without the loop turning (we do not await)
        assert worker.liveness() == Liveness(False, "stuck: the event loop has not turned for 5 s")
    finally:
        worker.stop()
        await asyncio.wait_for(running, 5)


# -- the worker's probe port -----------------------------------------------------------


def serve(liveness: Callable[[], Liveness]) -> tuple[ProbeServer, str]:
    probe = ProbeServer(liveness, host="127.0.0.1", port=0).start()
    return probe, f"http://127.0.0.1:{probe.port}"


def test_the_probe_serves_liveness_and_metrics() -> None:
    state = [Liveness(True, "consuming")]
    probe, url = serve(lambda: state[0])
    try:
        live = httpx.get(f"{url}/health/live", timeout=5)
        assert (live.status_code, live.json()) == (200, {"status": "ok", "detail": "consuming"})
        state[0] = Liveness(False, "cut off from the broker for 61 s")
        live = httpx.get(f"{url}/health/live", timeout=5)
        assert live.status_code == 503
        assert live.json() == {"status": "unavailable", "detail": "cut off from the broker for 61 s"}
        metrics = httpx.get(f"{url}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert "# TYPE taskcore_tasks_in_flight gauge" in metrics.text
        assert httpx.get(f"{url}/other", timeout=5).status_code == 404
        assert httpx.post(f"{url}/health/live", timeout=5).status_code == 405
    finally:
        probe.stop()


@pytest.mark.looptime
async def test_the_probe_answers_503_while_the_event_loop_is_blocked(
    processor: TaskProcessor, queue: MemoryQueue
) -> None:
    """The probe's thread answers while the event loop is blocked (the blocking
    ``httpx.get`` calls here hold it). The worker's monotonic clock is the test's:
    a blocked loop is one whose heartbeat falls behind that clock, so how long
    the blocking calls really take decides nothing."""
    now = [100.0]
    worker = Worker(processor=processor, queue=queue, stall_s=0.2, monotonic=lambda: now[0])
    running = asyncio.create_task(worker.run())
    probe, url = serve(worker.liveness)
    try:
        await eventually(lambda: worker.liveness().consuming)
        assert httpx.get(f"{url}/health/live", timeout=5).status_code == 200  # noqa: ASYNC210
        now[0] += 5  # five seconds pass while the loop is blocked (nothing here awaits)
        blocked = httpx.get(f"{url}/health/live", timeout=5)  # noqa: ASYNC210 -- still blocked
        assert blocked.status_code == 503, blocked.text
        assert blocked.json()["detail"] == "stuck: the event loop has not turned for 5 s"
        await eventually(lambda: worker.liveness().consuming)  # unblocked: the heartbeat catches up
        assert httpx.get(f"{url}/health/live", timeout=5).status_code == 200  # noqa: ASYNC210
    finally:
        probe.stop()
        worker.stop()
        await asyncio.wait_for(running, 5)


def test_shared_metrics_dir_is_made_for_the_block_and_removed_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with shared_metrics_dir() as made:
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == made
        assert Path(made).is_dir()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert not Path(made).exists()


def test_an_operators_metrics_dir_is_kept_but_its_stale_files_go(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "counter_41.db").write_bytes(b"from the last run")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with shared_metrics_dir() as used:
        assert used == str(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert tmp_path.is_dir()
