"""Every operation has an SDK-like ``operationId``, and a client generated from
the live schema with openapi-python-client works as a new user would use it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from taskcore import HandlerRegistry, register_builtins
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from tests.unit.test_dev_process import DEADLINE_S, TASKCORE, free_port, wait_until_serving

SCHEMA_PATH = "/docs/openapi.json"
GENERATOR = str(Path(sys.executable).with_name("openapi-python-client"))
PACKAGE = "taskcore_client"  # openapi-python-client names it after the schema's title
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

# (method, path) -> operationId: every operation the schema publishes.
EXPECTED = {
    ("post", "/tasks"): "submitTask",
    ("post", "/tasks/batch"): "submitTasks",
    ("get", "/tasks"): "listTasks",
    ("get", "/tasks/{task_id}"): "getTask",
    ("get", "/tasks/{task_id}/detail"): "getTaskDetail",
    ("get", "/tasks/{task_id}/events"): "streamTaskEvents",
    ("post", "/tasks/{task_id}/cancel"): "cancelTask",
    ("post", "/tasks/{task_id}/retry"): "retryTask",
    ("post", "/tasks/cancel"): "cancelTasks",
    ("post", "/tasks/retry"): "retryTasks",
    ("get", "/stats"): "getStats",
    ("get", "/queues"): "listQueues",
    ("post", "/queues/{name}/pause"): "pauseQueue",
    ("post", "/queues/{name}/resume"): "resumeQueue",
    ("post", "/workflows"): "submitWorkflow",
    ("get", "/workflows/{workflow_id}"): "getWorkflow",
    ("post", "/workflows/{workflow_id}/cancel"): "cancelWorkflow",
    ("post", "/webhooks"): "registerWebhook",
    ("get", "/webhooks"): "listWebhooks",
    ("delete", "/webhooks/{endpoint_id}"): "removeWebhook",
    ("get", "/webhooks/deliveries"): "listWebhookDeliveries",
    ("post", "/webhooks/deliveries/{delivery_id}/retry"): "redeliverWebhook",
    ("post", "/schedules"): "createSchedule",
    ("get", "/schedules"): "listSchedules",
    ("get", "/schedules/{name}"): "getSchedule",
    ("delete", "/schedules/{name}"): "deleteSchedule",
    ("post", "/schedules/{name}/pause"): "pauseSchedule",
    ("post", "/schedules/{name}/resume"): "resumeSchedule",
    ("get", "/health/live"): "getLiveness",
    ("get", "/health/ready"): "getReadiness",
}
# The generated modules, by tag: snake_case of the operationId.
MODULES = {
    "tasks": {
        "submit_task",
        "submit_tasks",
        "list_tasks",
        "get_task",
        "get_task_detail",
        "stream_task_events",
        "cancel_task",
        "retry_task",
        "cancel_tasks",
        "retry_tasks",
    },
    "dashboard": {"get_stats"},
    "queues": {"list_queues", "pause_queue", "resume_queue"},
    "workflows": {"submit_workflow", "get_workflow", "cancel_workflow"},
    "webhooks": {
        "register_webhook",
        "list_webhooks",
        "remove_webhook",
        "list_webhook_deliveries",
        "redeliver_webhook",
    },
    "schedules": {
        "create_schedule",
        "list_schedules",
        "get_schedule",
        "delete_schedule",
        "pause_schedule",
        "resume_schedule",
    },
    "health": {"get_liveness", "get_readiness"},
}


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


@pytest.mark.parametrize("auth", ["none", "jwt"])
async def test_every_operation_has_its_sdk_like_operation_id(auth: str) -> None:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    settings = load_settings({"TASKCORE_AUTH": auth, "TASKCORE_JWT_SECRET": "s" * 32})
    async with AsyncTestClient(create_app(build_container(settings, registry))) as client:
        schema = (await client.get(SCHEMA_PATH)).json()
    found = operations(schema)
    missing = [key for key, operation in found.items() if "operationId" not in operation]
    assert missing == []
    ids = [operation["operationId"] for operation in found.values()]
    assert len(ids) == len(set(ids))
    assert {key: operation["operationId"] for key, operation in found.items()} == EXPECTED


@pytest.fixture
def dev_base_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "TASKCORE_REVERSE_DELAY_S": "0.05", "TASKCORE_LOG_LEVEL": "WARNING"}
    env.pop("TASKCORE_AUTH", None)  # taskcore dev: auth off
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as stderr:  # a file, not a pipe nobody reads, which could fill and block it
        proc = subprocess.Popen(
            [TASKCORE, "dev", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, proc, errors)
        yield base
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=DEADLINE_S)


@pytest.fixture
def generated_client(dev_base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``openapi-python-client generate --url`` on the live schema; its package importable."""
    output = tmp_path / "client"
    # The venv's bin on PATH: the generator's post hooks run ruff, as on a user's machine.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [GENERATOR, "generate", "--url", f"{dev_base_url}{SCHEMA_PATH}", "--output-path", str(output)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
    monkeypatch.syspath_prepend(str(output))
    try:
        yield output / PACKAGE
    finally:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_a_generated_client_submits_waits_for_and_cancels_tasks(
    generated_client: Path, dev_base_url: str
) -> None:
    generated = {
        tag: {p.stem for p in (generated_client / "api" / tag).glob("*.py") if p.stem != "__init__"}
        for tag in MODULES
    }
    assert generated == MODULES
    for tag, names in MODULES.items():
        for name in names:
            api = module(f"api.{tag}.{name}")
            for function in ("sync", "sync_detailed", "asyncio", "asyncio_detailed"):
                assert callable(getattr(api, function)), f"{tag}.{name}.{function}"

    client_module, models = module("client"), module("models")
    submit_task, get_task = module("api.tasks.submit_task"), module("api.tasks.get_task")
    cancel_task, list_tasks = module("api.tasks.cancel_task"), module("api.tasks.list_tasks")
    get_liveness = module("api.health.get_liveness")
    client = client_module.Client(base_url=dev_base_url, timeout=httpx.Timeout(90))

    assert get_liveness.sync(client=client).status == "ok"

    created = submit_task.sync(client=client, body=models.Reverse(input_data="hello"))
    assert isinstance(created, models.TaskView)
    assert (created.type_, created.status) == ("reverse", models.TaskStatus.PENDING)
    # The long poll answers once the task is final; bounded in case it answers with a
    # state still in progress (after `wait` seconds).
    deadline = time.monotonic() + 60
    task = created
    while task.status not in (models.TaskStatus.COMPLETED, models.TaskStatus.FAILED):
        assert time.monotonic() < deadline, f"task {created.id} still {task.status}"
        task = get_task.sync(created.id, client=client, wait=30)
        assert isinstance(task, models.TaskView)
    assert (task.id, task.status, task.result, task.attempts) == (
        created.id,
        models.TaskStatus.COMPLETED,
        "olleh",
        1,
    )

    delayed = submit_task.sync(client=client, body=models.Reverse(input_data="later", delay_s=3600))
    assert isinstance(delayed, models.TaskView)
    assert delayed.status == models.TaskStatus.PENDING
    cancelled = cancel_task.sync(delayed.id, client=client)
    assert isinstance(cancelled, models.TaskView)
    assert (cancelled.id, cancelled.status, cancelled.result) == (
        delayed.id,
        models.TaskStatus.CANCELLED,
        None,
    )
    read = get_task.sync(delayed.id, client=client)
    assert isinstance(read, models.TaskView)
    assert read.status == models.TaskStatus.CANCELLED
    again = cancel_task.sync_detailed(delayed.id, client=client)
    assert again.status_code == 409
    assert isinstance(again.parsed, models.Problem)
    assert again.parsed.status == 409

    page = list_tasks.sync(client=client)
    assert isinstance(page, models.TaskPage)
    assert [(t.id, t.status) for t in page.items] == [
        (delayed.id, models.TaskStatus.CANCELLED),
        (created.id, models.TaskStatus.COMPLETED),
    ]

    # A unique key: the second submit is the first task, answered 200 and parsed as one.
    unique = models.Reverse(input_data="once", delay_s=3600, unique_key="nightly")
    first = submit_task.sync_detailed(client=client, body=unique)
    second = submit_task.sync_detailed(client=client, body=unique)
    assert (first.status_code, second.status_code) == (201, 200)
    assert isinstance(second.parsed, models.TaskView)
    assert isinstance(first.parsed, models.TaskView)
    assert (second.parsed.id, second.headers["deduplicated"]) == (first.parsed.id, "true")

    cancel_tasks, retry_tasks = module("api.tasks.cancel_tasks"), module("api.tasks.retry_tasks")
    cancelled_all = cancel_tasks.sync(client=client, body=models.CancelFilter(type_="reverse"))
    assert isinstance(cancelled_all, models.BulkResult)
    assert (cancelled_all.matched, cancelled_all.changed, cancelled_all.next_cursor) == (1, 1, None)
    retried_all = retry_tasks.sync(
        client=client, body=models.RetryFilter(status=models.RetryableStatus.CANCELLED)
    )
    assert isinstance(retried_all, models.BulkResult)
    assert retried_all.changed == 2
