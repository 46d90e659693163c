"""Metrics, JSON logs and health of real ``api`` and ``worker`` processes.

The worker's port serves ``/metrics`` and ``/health/live``; the counts on it
and on the API's ``/metrics`` must match what the test made happen. The
worker's liveness goes 503 when its broker link is cut (through a proxy, so
the shared broker is untouched) and 200 again once it is back; the API's
readiness names a dependency that stopped answering, within its short timeout.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.faults.proxies import Proxies

from .conftest import Process, Stack, free_port

pytestmark = [pytest.mark.integration]

APP = "tests.integration.faults.handlers:registry"

T = TypeVar("T")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def proxies() -> Iterator[Proxies]:
    with Proxies() as made:
        yield made


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.1)


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def live(url: str) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.get(f"{url}/health/live", timeout=5)
    except httpx.TransportError as exc:
        return 0, {"error": str(exc)}
    return response.status_code, response.json()


def start_worker(stack: Stack, **env: str) -> tuple[Process, str]:
    port = free_port()
    worker = stack.start_worker(TASKCORE_WORKER_METRICS_PORT=str(port), **env)
    url = f"http://127.0.0.1:{port}"

    def consuming() -> bool:
        assert worker.popen.poll() is None, worker.output()
        return live(url)[0] == 200

    wait_for(consuming, 30, "the worker to consume")
    return worker, url


def publish_raw(amqp_url: str, queue: str, body: bytes) -> None:
    async def send() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)

    asyncio.run(send())


def json_lines(process: Process) -> list[dict[str, Any]]:
    lines = [line for line in process.output().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_metrics_on_the_api_and_the_worker_count_what_happened(stack: Stack, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    stack.env.update(
        {
            "TASKCORE_APP": APP,
            "TASKCORE_FAULT_DIR": str(runs),
            "TASKCORE_REVERSE_DELAY_S": "0",
            "TASKCORE_LOG_FORMAT": "json",
        }
    )
    api = stack.start_api()
    worker, worker_url = start_worker(stack)
    marker = uuid.uuid4().hex
    inputs = [f"observed-{marker}-{i}" for i in range(3)]
    ids = [stack.submit(text)["id"] for text in inputs]
    # This handler's error message quotes its input, and errors are logged: not the marker.
    failing = stack.submit("doomed", type="always_fails")["id"]
    for task_id, text in zip(ids, inputs, strict=True):
        assert stack.wait_final(task_id)["result"] == text[::-1]
    failed = stack.wait_final(failing)
    assert (failed["status"], failed["attempts"]) == ("FAILED", 3)
    publish_raw(stack.env["TASKCORE_AMQP_URL"], stack.queue_name, b"not a task id")

    # The depths are read every 5 s: wait for the poison message to show on both ports.
    def dead_letter_seen(url: str) -> Samples | None:
        samples = scrape(url)
        dead = metric(samples, "taskcore_dead_letter_depth_messages", queue="default")
        return samples if dead == 1 else None

    at_worker = wait_for(lambda: dead_letter_seen(worker_url), 20, "the dead letter on the worker")
    at_api = wait_for(lambda: dead_letter_seen(stack.base_url), 20, "the dead letter on the API")

    # The API: what it was asked and what it stored.
    assert metric(at_api, "taskcore_tasks_submitted_total", type="reverse", queue="default") == 3
    assert metric(at_api, "taskcore_tasks_submitted_total", type="always_fails", queue="default") == 1
    created = {"app_name": "taskcore", "method": "POST", "path": "/tasks", "status_code": "201"}
    assert metric(at_api, "taskcore_http_requests_total", **created) == 4
    assert metric(at_api, "taskcore_http_request_duration_seconds_count", **created) == 4
    reads = {"app_name": "taskcore", "method": "GET", "path": "/tasks/{task_id}", "status_code": "200"}
    assert (metric(at_api, "taskcore_http_requests_total", **reads) or 0) >= 4
    cache_reads = (metric(at_api, "taskcore_cache_hits_total") or 0) + (
        metric(at_api, "taskcore_cache_misses_total") or 0
    )
    assert cache_reads == metric(at_api, "taskcore_http_requests_total", **reads)  # one per read
    assert metric(at_api, "taskcore_queue_depth_messages", queue="default") == 0

    # The worker: what it ran and how it ended.
    assert metric(at_worker, "taskcore_tasks_completed_total", type="reverse", queue="default") == 3
    assert metric(at_worker, "taskcore_tasks_retried_total", type="always_fails", queue="default") == 2
    assert metric(at_worker, "taskcore_tasks_failed_total", type="always_fails", queue="default") == 1
    assert metric(at_worker, "taskcore_task_queue_wait_seconds_count", type="reverse", queue="default") == 3
    waited = "taskcore_task_queue_wait_seconds_count"
    assert metric(at_worker, waited, type="always_fails", queue="default") == 3
    assert metric(at_worker, "taskcore_task_run_seconds_count", type="reverse", queue="default") == 3
    assert metric(at_worker, "taskcore_task_run_seconds_count", type="always_fails", queue="default") == 3
    assert metric(at_worker, "taskcore_messages_dead_lettered_total", reason="invalid_message") == 1
    assert metric(at_worker, "taskcore_tasks_in_flight") == 0
    assert metric(at_worker, "taskcore_queue_depth_messages", queue="default") == 0
    submitted = "taskcore_tasks_submitted_total"
    assert metric(at_worker, submitted, type="reverse", queue="default") is None  # not the API's

    # JSON lines, with the task's context on the worker's, and no input anywhere.
    assert worker.stop() == 0
    worker_lines = json_lines(worker)
    done = [line for line in worker_lines if line["message"] == f"task {ids[0]} completed on attempt 1"]
    assert len(done) == 1, worker_lines
    assert (done[0]["task_id"], done[0]["type"], done[0]["attempt"], done[0]["level"]) == (
        ids[0],
        "reverse",
        1,
        "INFO",
    )
    assert done[0]["worker_id"].endswith(f"-{worker.popen.pid}")
    assert api.stop() == 0
    json_lines(api)  # uvicorn's lines included
    for process in (api, worker):
        assert marker not in process.output()
        assert marker[::-1] not in process.output()


def test_the_worker_is_not_live_while_cut_off_from_the_broker(stack: Stack, proxies: Proxies) -> None:
    broker = proxies(stack.env["TASKCORE_AMQP_URL"])
    stack.start_api()
    worker, url = start_worker(stack, TASKCORE_AMQP_URL=broker.url, TASKCORE_WORKER_STALL_S="2")
    assert live(url) == (200, {"status": "ok", "detail": "consuming"})

    broker.cut()
    status, body = wait_for(lambda: (s := live(url))[0] == 503 and s, 20, "liveness to fail")
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["detail"].startswith("cut off from the broker for"), body

    broker.restore()
    wait_for(lambda: live(url)[0] == 200, 30, "liveness to recover")
    task_id = stack.submit("after the cut")["id"]
    assert stack.wait_final(task_id)["result"] == "tuc eht retfa"
    assert worker.stop() == 0, worker.output()


def test_readiness_names_a_dependency_that_stopped_answering(stack: Stack, proxies: Proxies) -> None:
    database = proxies(stack.database_url)
    stack.start_api(TASKCORE_DATABASE_URL=database.url, TASKCORE_DATABASE_TIMEOUT_S="2")
    assert httpx.get(f"{stack.base_url}/health/ready", timeout=5).status_code == 200

    database.pause()  # connections stay open; nothing answers
    try:
        started = time.monotonic()
        response = httpx.get(f"{stack.base_url}/health/ready", timeout=10)
        took = time.monotonic() - started
        assert response.status_code == 503, response.text
        checks = response.json()["checks"]
        assert checks["postgres"] == "unavailable: no answer within 1 s", checks
        assert (checks["redis"], checks["rabbitmq"]) == ("ok", "ok")
        assert took < 3
    finally:
        database.restore()
    wait_for(
        lambda: httpx.get(f"{stack.base_url}/health/ready", timeout=5).status_code == 200,
        30,
        "readiness to recover",
    )
