"""Workflows on the memory adapters and the event loop's fake time: steps run in
dependency order with the results of the steps before, a failure cancels what
runs after it (unless that runs anyway), and graphs are checked before
anything is stored. (On PostgreSQL: tests/contracts/workflows.py; through
real processes: tests/integration/e2e/test_workflows.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from taskcore import HandlerRegistry, TaskContext, TaskStatus, Worker, Workflow
from taskcore.errors import InvalidInput
from taskcore.model.workflows import StepSpec, ordered_steps
from tests.core import Core, LoopClock, build_core

pytestmark = pytest.mark.looptime


class Recorder:
    """The handlers of these tests: each records when it ran and what it read."""

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}
        self.read: dict[str, dict[str, Any]] = {}

    def registry(self) -> HandlerRegistry:
        registry = HandlerRegistry()

        @registry.handler(max_attempts=1)
        async def work(name: str, ctx: TaskContext) -> str:
            started = asyncio.get_running_loop().time()
            self.read[name] = dict(ctx.results)
            await asyncio.sleep(1)
            self.spans[name] = (started, asyncio.get_running_loop().time())
            return f"{name}!"

        @registry.handler(max_attempts=1)
        async def fail(name: str) -> None:
            raise RuntimeError(f"{name} fails")

        @registry.handler
        def plain(n: int) -> int:
            return n

        return registry


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def core(recorder: Recorder) -> Core:
    return build_core(clock=LoopClock(), registry=recorder.registry())


async def until(done: Callable[[], bool]) -> None:
    for _ in range(100_000):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not done in time")


async def run_until_final(core: Core, ids: list[int]) -> None:
    worker = Worker(processor=core.processor, queue=core.queue, concurrency=10)
    running = asyncio.create_task(worker.run())
    await until(lambda: all(core.db.tasks[i].is_final for i in ids))
    worker.stop()
    await running


def diamond(last: str = "work", *, run_anyway: bool = False, middle: str = "work") -> list[StepSpec]:
    return [
        StepSpec(name="a", type="work", input="a"),
        StepSpec(name="b", type=middle, input="b", after=("a",)),
        StepSpec(name="c", type="work", input="c", after=("a",)),
        StepSpec(name="d", type=last, input="d", after=("b", "c"), run_anyway=run_anyway),
    ]


async def test_a_diamond_runs_in_dependency_order_and_the_last_step_reads_both_results(
    core: Core, recorder: Recorder
) -> None:
    stored = await core.workflows.submit(diamond(), name="diamond")
    assert [step.step for step in stored.steps] == ["a", "b", "c", "d"]
    assert [step.blocked for step in stored.steps] == [False, True, True, True]
    assert core.queue.depth == 1  # only the step that runs after nothing is woken
    await run_until_final(core, [step.id for step in stored.steps])
    spans = recorder.spans
    assert spans["b"][0] == spans["c"][0] == spans["a"][1]  # fan-out as soon as a ended
    assert spans["d"][0] == max(spans["b"][1], spans["c"][1])  # fan-in once both had
    assert recorder.read == {"a": {}, "b": {"a": "a!"}, "c": {"a": "a!"}, "d": {"b": "b!", "c": "c!"}}
    done = await core.workflows.get(stored.id)
    assert {step.step: (step.status, step.result) for step in done.steps} == {
        name: (TaskStatus.COMPLETED, f"{name}!") for name in "abcd"
    }


async def test_a_failed_step_cancels_what_runs_after_it_naming_it(core: Core, recorder: Recorder) -> None:
    stored = await core.workflows.submit(diamond(middle="fail"))
    await run_until_final(core, [step.id for step in stored.steps])
    steps = {step.step: step for step in (await core.workflows.get(stored.id)).steps}
    assert steps["b"].status is TaskStatus.FAILED
    assert steps["c"].status is TaskStatus.COMPLETED
    assert steps["d"].status is TaskStatus.CANCELLED
    assert steps["d"].error == "cancelled: step 'b', which it runs after, is FAILED"
    assert "d" not in recorder.spans


async def test_a_step_that_runs_anyway_starts_after_a_failure_with_the_results_there_are(
    core: Core, recorder: Recorder
) -> None:
    stored = await core.workflows.submit(diamond(middle="fail", run_anyway=True))
    await run_until_final(core, [step.id for step in stored.steps])
    steps = {step.step: step for step in (await core.workflows.get(stored.id)).steps}
    assert steps["d"].status is TaskStatus.COMPLETED
    assert recorder.read["d"] == {"c": "c!"}


async def test_cancelling_a_workflow_cancels_its_unfinished_steps(core: Core, recorder: Recorder) -> None:
    stored = await core.workflows.submit(diamond())
    worker = Worker(processor=core.processor, queue=core.queue, concurrency=10)
    running = asyncio.create_task(worker.run())
    await until(lambda: "a" in recorder.spans)  # a done, b and c running
    await asyncio.sleep(0.5)
    cancelled = await core.workflows.cancel(stored.id)
    await until(lambda: all(core.db.tasks[step.id].is_final for step in stored.steps))
    worker.stop()
    await running
    assert [step.status for step in cancelled.steps] == [TaskStatus.COMPLETED] + [TaskStatus.CANCELLED] * 3
    assert "d" not in recorder.spans
    assert (await core.workflows.cancel(stored.id)).steps == cancelled.steps  # safe to repeat


async def test_a_chain_of_300_cancelled_at_its_head_cancels_every_step(core: Core) -> None:
    steps = [StepSpec(name="s0", type="work", input="s0")] + [
        StepSpec(name=f"s{n}", type="work", input=f"s{n}", after=(f"s{n - 1}",)) for n in range(1, 300)
    ]
    stored = await core.workflows.submit(steps)
    await core.service.cancel(stored.steps[0].id)  # no recursion: the cascade is a loop
    assert {core.db.tasks[step.id].status for step in stored.steps} == {TaskStatus.CANCELLED}


async def test_a_submit_may_run_after_existing_tasks(core: Core) -> None:
    first = await core.service.submit("plain", 1)
    second = await core.service.submit("plain", 2, after=[first.id])
    assert (second.after, second.blocked) == ((first.id,), True)
    await run_until_final(core, [first.id, second.id])
    assert core.db.tasks[second.id].started_at >= core.db.tasks[first.id].finished_at  # type: ignore[operator]
    # After a task that ended already: it starts at once; after a failed one: cancelled at once.
    third = await core.service.submit("plain", 3, after=[first.id])
    assert core.db.tasks[third.id].blocked is False
    doomed = await core.service.submit("fail", "x")
    await run_until_final(core, [third.id, doomed.id])
    after_failure = await core.service.submit("plain", 4, after=[doomed.id])
    assert core.db.tasks[after_failure.id].status is TaskStatus.CANCELLED


async def test_after_only_names_tasks_the_caller_can_see(core: Core) -> None:
    theirs = await core.service.submit("plain", 1, owner="bob")
    for after in ([theirs.id], [987654]):
        with pytest.raises(InvalidInput, match="which does not exist"):
            await core.service.submit("plain", 2, owner="alice", after=after)
    assert len(core.db.tasks) == 1


async def test_a_missed_settling_is_done_by_the_sweeper(core: Core) -> None:
    """A worker that died between a step's verdict and settling what runs after it."""
    stored = await core.workflows.submit(
        [StepSpec(name="a", type="plain", input=1), StepSpec(name="b", type="plain", input=2, after=("a",))]
    )
    a, b = stored.steps
    claimed = await core.tasks.claim(a.id, core.clock.now(), core.config.lease)
    assert claimed is not None
    assert await core.tasks.save(claimed.complete(1, core.clock.now()))  # stored, then the worker died
    assert core.db.tasks[b.id].blocked
    assert (await core.sweeper.sweep_once()).settled == 1
    assert core.db.tasks[b.id].blocked is False
    assert (await core.sweeper.sweep_once()).settled == 0


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "at least one step"),
        ([StepSpec(name="a", type="plain", input=1)] * 2, "two steps are named 'a'"),
        ([StepSpec(name="a b", type="plain", input=1)], "a step name is"),
        ([StepSpec(name="a", type="plain", input=1, after=("z",))], "runs after 'z', which is no step"),
        (
            [
                StepSpec(name="a", type="plain", input=1, after=("c",)),
                StepSpec(name="b", type="plain", input=1, after=("a",)),
                StepSpec(name="c", type="plain", input=1, after=("b",)),
            ],
            "in a cycle",
        ),
    ],
)
def test_a_graph_is_checked_before_anything_is_stored(steps: list[StepSpec], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ordered_steps(steps)


async def test_a_bad_input_names_its_step_and_stores_nothing(core: Core) -> None:
    steps = [
        StepSpec(name="a", type="plain", input=1),
        StepSpec(name="b", type="plain", input="x", after=("a",)),
    ]
    with pytest.raises(InvalidInput, match="step 'b'"):
        await core.workflows.submit(steps)
    assert core.db.tasks == {}
    assert core.db.workflows == {}


def test_the_builder_chains_steps_and_groups() -> None:
    flow = Workflow("etl")
    extract = flow.step("extract", "work", "e")
    clean, enrich = flow.step("clean", "work", "c"), flow.step("enrich", "work", "n")
    load = flow.step("load", "work", "l")
    flow.chain(extract, flow.group(clean, enrich), load)
    audit = flow.step("audit", "work", "x", after=[extract], run_anyway=True)
    specs = {spec.name: spec for spec in flow.specs()}
    assert specs["extract"].after == ()
    assert specs["clean"].after == specs["enrich"].after == ("extract",)
    assert specs["load"].after == ("clean", "enrich")
    assert (specs[audit.name].after, specs[audit.name].run_anyway) == (("extract",), True)
    with pytest.raises(InvalidInput):
        flow.step("load", "work", "again")
