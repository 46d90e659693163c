"""A trace spans the API and the worker: real ``taskcore api`` and ``taskcore
worker`` processes print their spans (``TASKCORE_OTEL_EXPORTER=console``, a
JSON object a line), and the test joins them.

A client sends a ``traceparent``: the API's submit span is its child, the
task's row stores the submit's context, and each attempt in the worker (a
failed one, then its retry) is a claim and a run span in the same trace,
children of the submit span and linked to it. The handler sees its run span
as the current one.
"""

from __future__ import annotations

import json
import signal
import uuid
from typing import Any

import httpx
import pytest

from .conftest import Process, Stack

pytestmark = [pytest.mark.integration]

APP = "tests.integration.e2e.traced_handlers:registry"
CLIENT_TRACE = uuid.uuid4().hex
CLIENT_SPAN = uuid.uuid4().hex[:16]


def spans_of(process: Process) -> list[dict[str, Any]]:
    """The spans a process printed: its JSON lines (its logs are text)."""
    return [json.loads(line) for line in process.output().splitlines() if line.startswith('{"name": ')]


def hex_id(value: str) -> str:
    return value.removeprefix("0x")


def test_a_trace_spans_the_api_and_the_worker(stack: Stack) -> None:
    tracing = {"TASKCORE_OTEL_EXPORTER": "console", "TASKCORE_APP": APP}
    api = stack.start_api(**tracing, OTEL_SERVICE_NAME="taskcore-api")
    worker = stack.start_worker(**tracing, OTEL_SERVICE_NAME="taskcore-worker")
    response = httpx.post(
        f"{stack.base_url}/tasks/",
        json={"type": "traced", "input_data": {"failures": 1}},
        headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    task = stack.wait_final(response.json()["id"])
    assert (task["status"], task["attempts"]) == ("COMPLETED", 2)
    ((stored,),) = stack.sql("SELECT trace_context FROM tasks WHERE id = %s", task["id"])
    assert json.loads(stored)["traceparent"].split("-")[1] == CLIENT_TRACE
    # A drained process flushes its spans as it exits.
    assert worker.stop(signal.SIGTERM) == 0, worker.output()
    assert api.stop(signal.SIGTERM) == 0, api.output()

    (submit,) = [span for span in spans_of(api) if span["name"] == "taskcore.submit"]
    assert hex_id(submit["context"]["trace_id"]) == CLIENT_TRACE
    assert hex_id(submit["parent_id"]) == CLIENT_SPAN
    assert submit["kind"] == "SpanKind.PRODUCER"
    assert submit["attributes"]["messaging.message.id"] == str(task["id"])
    assert submit["resource"]["attributes"]["service.name"] == "taskcore-api"

    worked = spans_of(worker)
    claims = [span for span in worked if span["name"] == "taskcore.claim"]
    runs = [span for span in worked if span["name"] == "taskcore.run"]
    assert len(claims) == len(runs) == 2
    for span in claims + runs:
        assert span["context"]["trace_id"] == submit["context"]["trace_id"]
        assert span["parent_id"] == submit["context"]["span_id"]
        assert [link["context"]["span_id"] for link in span["links"]] == [submit["context"]["span_id"]]
        assert span["kind"] == "SpanKind.CONSUMER"
        assert span["resource"]["attributes"]["service.name"] == "taskcore-worker"
    first, second = sorted(runs, key=lambda span: span["attributes"]["taskcore.attempt"])
    assert first["status"]["status_code"] == "ERROR"
    assert first["attributes"]["taskcore.outcome"] == "retry_scheduled"
    assert second["status"]["status_code"] == "UNSET"
    assert second["attributes"]["taskcore.outcome"] == "completed"
    # The handler's current span was its attempt's run span.
    assert task["result"] == {
        "trace_id": CLIENT_TRACE,
        "span_id": hex_id(second["context"]["span_id"]),
    }
