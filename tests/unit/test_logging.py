"""Log lines: JSON fields and console text with the request and task context; no secrets at INFO."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from taskcore import HandlerRegistry, Outcome, TaskProcessor, TaskService, register_builtins
from taskcore.adapters.memory import MemoryQueue
from taskcore.adapters.memory.queue import MemoryDelivery
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.http.request_id import _current as current_request
from taskcore.entrypoints.logs import log_handler
from taskcore.entrypoints.settings import load_settings
from taskcore.model.task import NewTask, Task
from taskcore.work.log_context import claimed, handling

from .test_http import on_loop_time, serving

SECRET = "jwt-secret-that-must-never-be-logged-8c1f0e"
INPUT = "input-that-must-never-be-logged-5d27a9"


class Capture:
    """Everything logged at ``level`` and above, as the configured handler writes it."""

    def __init__(self, log_format: str, level: int = logging.INFO, worker: str | None = None) -> None:
        self.stream = io.StringIO()
        self.handler = log_handler(log_format, worker=worker, stream=self.stream)  # type: ignore[arg-type]
        self.handler.setLevel(level)
        self.level = level

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def capture_json() -> Iterator[Capture]:
    capture = Capture("json")
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture.handler)
    root.setLevel(logging.INFO)
    try:
        yield capture
    finally:
        root.removeHandler(capture.handler)
        root.setLevel(level)


async def deliver(queue: MemoryQueue, processor: TaskProcessor) -> tuple[Outcome, MemoryDelivery]:
    """Take the next message off ``queue`` and process it."""
    async with queue.consume(prefetch=1) as consumer:
        delivery = await consumer.next()
        outcome = await processor.process(delivery)
        assert delivery.settled
        return outcome, delivery


def record(message: str = "hello", level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("taskcore.test", level, __file__, 1, message, None, None)


def format_with(capture: Capture, rec: logging.LogRecord) -> str:
    assert capture.handler.filter(rec)
    return capture.handler.format(rec)


def test_json_lines_carry_the_context_they_were_written_in() -> None:
    capture = Capture("json", worker="host-42")
    now = datetime.now(UTC)
    task = Task.created(7, NewTask(type="reverse", input="x", max_attempts=3, run_at=now, created_at=now))
    token = current_request.set("req-1")
    try:
        with handling(7):
            claimed(task.claim(now, timedelta(seconds=30)))
            line = json.loads(format_with(capture, record("running")))
    finally:
        current_request.reset(token)
    assert {k: line[k] for k in ("level", "logger", "message")} == {
        "level": "INFO",
        "logger": "taskcore.test",
        "message": "running",
    }
    assert (line["request_id"], line["task_id"], line["type"]) == ("req-1", 7, "reverse")
    assert (line["attempt"], line["worker_id"]) == (1, "host-42")
    assert line["time"].endswith("Z")  # UTC, RFC 3339


def test_json_lines_leave_out_unknown_context() -> None:
    line = json.loads(format_with(Capture("json"), record("idle")))
    assert set(line) == {"time", "level", "logger", "message"}


def test_json_lines_leave_out_uvicorns_coloured_copy_of_the_message() -> None:
    coloured = record("Started server process [7]")
    coloured.color_message = "Started server process [\x1b[36m%d\x1b[0m]"
    line = json.loads(format_with(Capture("json"), coloured))
    assert line["message"] == "Started server process [7]"
    assert "color_message" not in line


def test_console_lines_put_the_context_in_brackets() -> None:
    capture = Capture("console")
    with handling(12):
        text = format_with(capture, record("handed back", logging.WARNING))
    assert text.endswith(" WARNING taskcore.test [task_id=12]: handed back")
    assert format_with(capture, record("plain")).endswith(" INFO taskcore.test [-]: plain")


async def test_a_sync_handlers_lines_name_its_task(
    service: TaskService, processor: TaskProcessor, queue: MemoryQueue, registry: HandlerRegistry
) -> None:
    seen: list[tuple[Any, ...]] = []
    capture = Capture("json")

    class Keep(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            capture.handler.filter(rec)
            seen.append((rec.getMessage(), rec.task_id, rec.type, rec.attempt))  # type: ignore[attr-defined]

    @registry.handler
    def shout(text: str) -> str:  # runs in the executor's thread
        logging.getLogger("user.handler").warning("shouting")
        return text.upper()

    handler_log = logging.getLogger("user.handler")
    keep = Keep()
    handler_log.addHandler(keep)
    try:
        task = await service.submit("shout", "a")
        outcome, _ = await deliver(queue, processor)
    finally:
        handler_log.removeHandler(keep)
    assert outcome is Outcome.COMPLETED
    assert seen == [("shouting", task.id, "shout", 1)]


@pytest.mark.looptime
async def test_no_secret_token_or_input_is_logged_at_info(capture_json: Capture) -> None:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    container = on_loop_time(build_container(load_settings({}, jwt_secret=SECRET), registry))
    token = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 600, "scope": "tasks:read tasks:write"}, SECRET
    )
    wrong = jwt.encode({"sub": "mallory", "exp": int(time.time()) + 600}, "not-the-secret-0123456789abcdef!")
    app = create_app(container, embedded_worker=True, default_auth="jwt")
    async with serving(app) as client:
        headers = {"authorization": f"Bearer {token}", "x-request-id": "req-secrets"}
        created = await client.post("/tasks/", json={"input_data": INPUT}, headers=headers)
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        for _ in range(500):
            body = (await client.get(f"/tasks/{task_id}", headers=headers)).json()
            if body["status"] == "COMPLETED":
                break
            await asyncio.sleep(0.01)
        assert body["result"] == INPUT[::-1]
        assert (await client.get("/tasks/1", headers={"authorization": f"Bearer {wrong}"})).status_code == 401
    logged = capture_json.text
    lines = capture_json.lines()  # every line is JSON
    assert any(line.get("task_id") == task_id and line.get("type") == "reverse" for line in lines), logged
    for secret in (SECRET, token, wrong, INPUT, INPUT[::-1]):
        assert secret not in logged


def test_access_lines_skip_the_caller_lookup_but_keep_stack_info() -> None:
    from taskcore.entrypoints.logs import ACCESS_LOGGER, configure_logging

    configure_logging("INFO", "json")
    access = logging.getLogger(ACCESS_LOGGER)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            seen.append(rec)

    keep = Keep()
    access.addHandler(keep)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        access.info('%s - "GET /tasks/1 HTTP/1.1" 200', "127.0.0.1:5000")
        access.info("with a stack", stack_info=True)
    finally:
        access.removeHandler(keep)
        access.setLevel(level)
    assert (seen[0].funcName, seen[0].lineno) == ("(unknown function)", 0)
    assert seen[1].stack_info is not None
    assert "test_access_lines_skip_the_caller_lookup" in seen[1].stack_info
    assert seen[1].funcName == "test_access_lines_skip_the_caller_lookup_but_keep_stack_info"
