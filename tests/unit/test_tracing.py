"""OpenTelemetry tracing (``taskcore[otel]``) on the memory adapters.

Each test gets its own SDK ``TracerProvider`` with the in-memory exporter,
handed to ``OtelTracing``: the global provider is never set, so no test sees
another's spans. What holds: a submit and every attempt of its task make
one trace (the task's row carries the submit's context, so retries keep
it), the run span links to the submit span, the handler runs with the run
span current (async on the loop, sync in the thread pool), a failed attempt
is an ERROR span, and with tracing off nothing is traced or stored.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dependency_injector import providers
from litestar import Litestar
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from taskcore import HandlerRegistry, Outcome, TaskStatus, register_builtins
from taskcore.adapters.otel import otel_tracing
from taskcore.adapters.otel.export import JsonLinesExporter
from taskcore.adapters.otel.tracing import OtelTracing, decode_carrier, encode_carrier
from taskcore.entrypoints.container import _tracing, build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from taskcore.errors import ConfigurationError
from taskcore.model.batch import TaskRequest
from taskcore.model.workflows import StepSpec
from taskcore.tracing import NoTracing
from tests.core import Core, ManualClock, build_core
from tests.unit.test_http import eventually, on_loop_time, serving
from tests.unit.test_processor import deliver

ROOT = Path(__file__).parents[2]


class Spans:
    """The spans a test's provider has ended, by name."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracing = OtelTracing(self.provider)

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span


@pytest.fixture
def spans() -> Iterator[Spans]:
    recorded = Spans()
    yield recorded
    recorded.provider.shutdown()


@pytest.fixture
def traced(spans: Spans, clock: ManualClock, registry: HandlerRegistry) -> Core:
    executor = ThreadPoolExecutor(max_workers=2)
    return build_core(clock=clock, registry=registry, tracing=spans.tracing, executor=executor)


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def parent_of(span: ReadableSpan) -> tuple[int, int]:
    assert span.parent is not None
    return span.parent.trace_id, span.parent.span_id


async def test_submit_claim_and_run_are_one_trace_and_the_run_links_to_the_submit(
    traced: Core, spans: Spans
) -> None:
    task = await traced.service.submit("reverse", "hello")
    outcome, _ = await deliver(traced.queue, traced.processor)
    assert outcome is Outcome.COMPLETED

    submit, claim, run = spans.one("taskcore.submit"), spans.one("taskcore.claim"), spans.one("taskcore.run")
    assert submit.kind is SpanKind.PRODUCER
    assert claim.kind is run.kind is SpanKind.CONSUMER
    assert submit.parent is None  # no caller's trace: the submit starts one
    assert parent_of(claim) == parent_of(run) == ids(submit)
    (link,) = run.links
    assert (link.context.trace_id, link.context.span_id) == ids(submit)
    assert dict(submit.attributes or {}) == {
        "messaging.system": "taskcore",
        "messaging.operation.type": "send",
        "messaging.operation.name": "submit",
        "messaging.destination.name": "default",
        "messaging.message.id": str(task.id),
        "taskcore.task.type": "reverse",
    }
    assert dict(run.attributes or {}) == {
        "messaging.system": "taskcore",
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.destination.name": "default",
        "messaging.message.id": str(task.id),
        "taskcore.task.type": "reverse",
        "taskcore.attempt": 1,
        "taskcore.outcome": "completed",
    }
    assert (claim.attributes or {})["messaging.operation.type"] == "receive"
    assert run.status.status_code is StatusCode.UNSET
    # The row carries the submit's W3C context: what a worker anywhere reads.
    carrier = decode_carrier(traced.db.tasks[task.id].trace_context)
    trace_id, span_id = ids(submit)
    assert list(carrier) == ["traceparent"]
    assert carrier["traceparent"].startswith(f"00-{trace_id:032x}-{span_id:016x}-")


async def test_every_attempt_joins_the_submit_trace_and_a_failed_one_is_an_error(
    traced: Core, spans: Spans, registry: HandlerRegistry, clock: ManualClock
) -> None:
    calls = 0

    @registry.handler
    async def flaky(x: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("not yet")
        return x

    task = await traced.service.submit("flaky", "ok")
    assert (await deliver(traced.queue, traced.processor))[0] is Outcome.RETRY_SCHEDULED
    clock.advance(1)
    assert (await deliver(traced.queue, traced.processor))[0] is Outcome.COMPLETED
    assert traced.db.tasks[task.id].status is TaskStatus.COMPLETED

    submit = spans.one("taskcore.submit")
    first, second = spans.named("taskcore.run")
    assert [parent_of(run) for run in (first, second)] == [ids(submit)] * 2
    assert [(run.attributes or {})["taskcore.attempt"] for run in (first, second)] == [1, 2]
    assert [len(run.links) for run in (first, second)] == [1, 1]
    assert [parent_of(claim) for claim in spans.named("taskcore.claim")] == [ids(submit)] * 2

    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "ValueError: not yet"
    assert (first.attributes or {})["error.type"] == "ValueError"
    assert (first.attributes or {})["taskcore.outcome"] == "retry_scheduled"
    (event,) = first.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "ValueError"
    assert second.status.status_code is StatusCode.UNSET


async def test_a_task_out_of_attempts_ends_with_a_failed_run(
    traced: Core, spans: Spans, registry: HandlerRegistry
) -> None:
    @registry.handler(max_attempts=1)
    async def boom(_: str) -> None:
        raise RuntimeError("broken")

    await traced.service.submit("boom", "a")
    assert (await deliver(traced.queue, traced.processor))[0] is Outcome.FAILED
    run = spans.one("taskcore.run")
    assert run.status.status_code is StatusCode.ERROR
    assert (run.attributes or {})["taskcore.outcome"] == "failed"


async def test_a_database_failing_under_an_attempt_is_an_error_and_the_task_is_requeued(
    traced: Core, spans: Spans, registry: HandlerRegistry
) -> None:
    @registry.handler
    async def cut_off(_: str) -> None:
        traced.db.available = False  # the verdict cannot be stored

    await traced.service.submit("cut_off", "a")
    assert (await deliver(traced.queue, traced.processor))[0] is Outcome.REQUEUED
    run = spans.one("taskcore.run")
    assert run.status.status_code is StatusCode.ERROR
    assert (run.attributes or {})["error.type"] == "taskcore.errors.RepositoryUnavailable"


async def test_an_attempt_interrupted_by_a_drain_is_not_a_failure(
    traced: Core, spans: Spans, registry: HandlerRegistry
) -> None:
    started = asyncio.Event()

    @registry.handler
    async def forever(_: str) -> None:
        started.set()
        await asyncio.Event().wait()

    await traced.service.submit("forever", "a")
    async with traced.queue.consume(prefetch=1) as consumer:
        processing = asyncio.create_task(traced.processor.process(await consumer.next()))
        await started.wait()
        processing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await processing
    run = spans.one("taskcore.run")
    assert run.status.status_code is StatusCode.UNSET
    assert (run.attributes or {})["taskcore.interrupted"] is True


async def test_an_async_handler_runs_with_the_run_span_current(
    traced: Core, spans: Spans, registry: HandlerRegistry
) -> None:
    tracer = spans.provider.get_tracer("handler")

    @registry.handler
    async def inside(_: str) -> str:
        with tracer.start_as_current_span("handler work"):
            await asyncio.sleep(0)
        return trace.format_span_id(trace.get_current_span().get_span_context().span_id)

    task = await traced.service.submit("inside", "a")
    await deliver(traced.queue, traced.processor)
    run = spans.one("taskcore.run")
    assert traced.db.tasks[task.id].result == trace.format_span_id(ids(run)[1])
    assert parent_of(spans.one("handler work")) == ids(run)


async def test_a_sync_handler_in_the_thread_pool_runs_with_the_run_span_current(
    traced: Core, spans: Spans, registry: HandlerRegistry
) -> None:
    tracer = spans.provider.get_tracer("handler")

    @registry.handler
    def inside(_: str) -> str:
        with tracer.start_as_current_span("handler work"):
            pass
        return trace.format_span_id(trace.get_current_span().get_span_context().span_id)

    task = await traced.service.submit("inside", "a")
    await deliver(traced.queue, traced.processor)
    run = spans.one("taskcore.run")
    assert traced.db.tasks[task.id].result == trace.format_span_id(ids(run)[1])
    assert parent_of(spans.one("handler work")) == ids(run)


async def test_the_handler_sees_the_baggage_of_the_submit(
    traced: Core, spans: Spans, registry: HandlerRegistry
) -> None:
    @registry.handler
    async def tenant(_: str) -> object:
        return baggage.get_baggage("tenant")

    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        task = await traced.service.submit("tenant", "a")
    finally:
        otel_context.detach(token)
    await deliver(traced.queue, traced.processor)
    assert traced.db.tasks[task.id].result == "acme"


async def test_a_submit_continues_the_current_trace(traced: Core, spans: Spans) -> None:
    with spans.provider.get_tracer("caller").start_as_current_span("caller") as caller:
        await traced.service.submit("reverse", "hello")
    await deliver(traced.queue, traced.processor)
    caller_ids = (caller.get_span_context().trace_id, caller.get_span_context().span_id)
    assert parent_of(spans.one("taskcore.submit")) == caller_ids
    assert ids(spans.one("taskcore.run"))[0] == caller_ids[0]


async def test_a_refused_submit_is_an_error_span_and_stores_nothing(traced: Core, spans: Spans) -> None:
    with pytest.raises(Exception, match="invalid input"):
        await traced.service.submit("reverse", 42)
    submit = spans.one("taskcore.submit")
    assert submit.status.status_code is StatusCode.ERROR
    assert (submit.attributes or {})["error.type"] == "taskcore.errors.InvalidInput"
    assert traced.db.tasks == {}


async def test_a_deduplicated_submit_says_so_and_the_task_keeps_its_first_trace(
    traced: Core, spans: Spans
) -> None:
    first = await traced.service.submit("reverse", "a", unique_key="k")
    again = await traced.service.submit_detailed("reverse", "a", unique_key="k")
    assert again.deduplicated
    one, two = spans.named("taskcore.submit")
    assert (two.attributes or {})["taskcore.deduplicated"] is True
    assert (two.attributes or {})["messaging.message.id"] == str(first.id)
    assert decode_carrier(traced.db.tasks[first.id].trace_context)["traceparent"].split("-")[2] == (
        trace.format_span_id(ids(one)[1])
    )


async def test_a_batch_is_one_submit_span_that_each_of_its_tasks_carries(traced: Core, spans: Spans) -> None:
    await traced.service.submit_many([TaskRequest(type="reverse", input=str(n)) for n in range(3)])
    assert traced.queue.depth == 1  # one message wakes the three
    async with traced.queue.consume(prefetch=1) as consumer:
        for _ in range(3):
            await traced.processor.process(await consumer.next())
    submit = spans.one("taskcore.submit")
    assert (submit.attributes or {})["messaging.batch.message_count"] == 3
    assert {parent_of(run) for run in spans.named("taskcore.run")} == {ids(submit)}
    assert len(spans.named("taskcore.run")) == 3


async def test_a_workflow_is_one_submit_span_that_each_step_carries(traced: Core, spans: Spans) -> None:
    workflow = await traced.workflows.submit(
        [
            StepSpec(name="a", type="reverse", input="x"),
            StepSpec(name="b", type="reverse", input="y", after=("a",)),
        ]
    )
    for _ in workflow.steps:
        await deliver(traced.queue, traced.processor)
    submit = spans.one("taskcore.submit")
    runs = spans.named("taskcore.run")
    assert {parent_of(run) for run in runs} == {ids(submit)}
    assert sorted((run.attributes or {})["taskcore.step"] for run in runs) == ["a", "b"]
    assert {(run.attributes or {})["taskcore.workflow.id"] for run in runs} == {workflow.id}


async def test_a_task_without_a_stored_context_runs_in_a_trace_of_its_own(
    traced: Core, spans: Spans, clock: ManualClock, registry: HandlerRegistry
) -> None:
    """A task stored before tracing was on, or by an untraced process."""
    untraced = build_core(clock=clock, registry=registry, db=traced.db, queue=traced.queue)
    await untraced.service.submit("reverse", "old")
    await deliver(traced.queue, traced.processor)
    run = spans.one("taskcore.run")
    assert run.parent is None
    assert run.links == ()


async def test_with_tracing_off_nothing_is_traced_or_stored(core: Core) -> None:
    task = await core.service.submit("reverse", "hello")
    assert (await deliver(core.queue, core.processor))[0] is Outcome.COMPLETED
    assert task.trace_context is None
    assert core.db.tasks[task.id].trace_context is None


def test_a_carrier_survives_its_text_and_a_bad_text_carries_nothing() -> None:
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "a=1"}
    assert decode_carrier(encode_carrier(carrier)) == carrier
    assert encode_carrier({}) is None
    assert decode_carrier(None) == decode_carrier("not json") == decode_carrier("[1]") == {}


# -- the HTTP API: a client's traceparent --------------------------------------------------


def test_a_request_continues_its_callers_trace_unless_a_span_is_current(spans: Spans) -> None:
    client = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with spans.tracing.continued({"traceparent": client}):
        assert trace.get_current_span().get_span_context().span_id == 0xB7AD6B7169203331
    assert not trace.get_current_span().get_span_context().is_valid
    with spans.tracing.continued({"traceparent": "garbage"}):
        assert not trace.get_current_span().get_span_context().is_valid
    # An ASGI instrumentation's server span already continued the caller's trace: it stays current.
    with (
        spans.provider.get_tracer("asgi").start_as_current_span("server") as server,
        spans.tracing.continued({"traceparent": client}),
    ):
        assert trace.get_current_span() is server


@pytest.mark.looptime
async def test_a_client_traceparent_continues_through_the_api_into_the_worker(spans: Spans) -> None:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0.05)
    container = on_loop_time(build_container(load_settings({}), registry))
    container.tracing.override(providers.Object(spans.tracing))
    app: Litestar = create_app(container, embedded_worker=True)
    client_trace, client_span = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    async with serving(app) as client:
        response = await client.post(
            "/tasks/",
            json={"input_data": "hello"},
            headers={"traceparent": f"00-{client_trace:032x}-{client_span:016x}-01"},
        )
        assert response.status_code == 201
        await eventually(lambda: spans.named("taskcore.run") != [])
    submit, run = spans.one("taskcore.submit"), spans.one("taskcore.run")
    assert parent_of(submit) == (client_trace, client_span)
    assert parent_of(run) == ids(submit)


# -- choosing the tracer: settings, and the extra missing ------------------------------------


def test_tracing_is_on_when_the_extra_is_installed_and_off_when_asked() -> None:
    assert isinstance(_tracing(load_settings({})), OtelTracing)
    assert isinstance(_tracing(load_settings({"TASKCORE_OTEL": "on"})), OtelTracing)
    assert isinstance(_tracing(load_settings({"TASKCORE_OTEL": "off"})), NoTracing)
    with pytest.raises(ConfigurationError, match="TASKCORE_OTEL_EXPORTER"):
        _tracing(load_settings({"TASKCORE_OTEL": "off", "TASKCORE_OTEL_EXPORTER": "console"}))
    with pytest.raises(ConfigurationError, match="TASKCORE_OTEL: Invalid enum value 'maybe'"):
        load_settings({"TASKCORE_OTEL": "maybe"})


def test_without_the_extra_auto_is_off_and_on_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskcore.adapters import otel

    monkeypatch.setattr(otel, "installed", lambda sdk=False: False)
    assert isinstance(_tracing(load_settings({})), NoTracing)
    with pytest.raises(ConfigurationError, match=r"TASKCORE_OTEL: opentelemetry-api is not installed"):
        _tracing(load_settings({"TASKCORE_OTEL": "on"}))
    with pytest.raises(
        ConfigurationError, match=r"TASKCORE_OTEL_EXPORTER: .* pip install 'taskcore\[otel\]'"
    ):
        _tracing(load_settings({"TASKCORE_OTEL_EXPORTER": "console"}))


def _run(script: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


COMPOSE_AND_RUN = """
import asyncio, sys
{before}
from taskcore import HandlerRegistry, register_builtins
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.lifecycle import open_resources
from taskcore.entrypoints.settings import load_settings

async def main():
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    container = build_container(load_settings(), registry)
    async with open_resources(container):
        task = await container.service().submit("reverse", "hello")
        async with container.queue().consume(prefetch=1) as consumer:
            await container.processor().process(await consumer.next())
        print(type(container.tracing()).__name__, task.trace_context is not None)
    print("taskcore.adapters.otel.tracing" in sys.modules)

asyncio.run(main())
"""


def test_off_or_missing_loads_no_tracing_adapter() -> None:
    """What "off and free" means: ``NoTracing``, and taskcore imports no
    OpenTelemetry (redis-py may, on its own, when it is installed)."""
    off = _run(COMPOSE_AND_RUN.format(before=""), TASKCORE_OTEL="off")
    assert off.split() == ["NoTracing", "False", "False"]
    # The extra missing: every opentelemetry import fails, as on a machine without it.
    missing = "sys.modules['opentelemetry'] = None"
    assert _run(COMPOSE_AND_RUN.format(before=missing)).split() == ["NoTracing", "False", "False"]
    # On (auto), with no SDK set up: the API's no-op spans carry no context to store.
    assert _run(COMPOSE_AND_RUN.format(before="")).split() == ["OtelTracing", "False", "True"]


def test_the_console_exporter_prints_a_json_line_per_span() -> None:
    """``TASKCORE_OTEL_EXPORTER=console``: the process installs the SDK and prints
    every span, the submit's context stored with the task; a flush at exit."""
    out = _run(COMPOSE_AND_RUN.format(before=""), TASKCORE_OTEL_EXPORTER="console", OTEL_SERVICE_NAME="svc")
    lines = out.splitlines()
    assert lines[-2:] == ["OtelTracing True", "True"]
    printed = [json.loads(line) for line in lines[:-2]]
    assert sorted(span["name"] for span in printed) == ["taskcore.claim", "taskcore.run", "taskcore.submit"]
    assert len({span["context"]["trace_id"] for span in printed}) == 1
    assert {span["resource"]["attributes"]["service.name"] for span in printed} == {"svc"}


def test_json_lines_exporter_writes_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    with path.open("ab") as out:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(out.fileno())))
        tracer = otel_tracing(provider)
        with tracer.submitting("reverse"):
            pass
        provider.shutdown()
    (line,) = path.read_text().splitlines()
    assert json.loads(line)["name"] == "taskcore.submit"
