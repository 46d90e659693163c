"""Retention on the memory adapters and a clock the test moves: what a sweep
deletes and keeps, per handler, at most how much, and what a failing database
costs it; the setting, the handler option and an Idempotency-Key replay."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from dependency_injector import providers
from prometheus_client import CollectorRegistry

from taskcore import HandlerRegistry, TaskStatus, register_builtins
from taskcore.adapters.memory import MemoryQueue
from taskcore.adapters.prometheus import PrometheusTelemetry
from taskcore.entrypoints.cli import main
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from taskcore.errors import ConfigurationError, HandlerRegistrationError, RepositoryUnavailable
from taskcore.model.retention import PruneCutoffs
from taskcore.model.task import NewTask, Task
from taskcore.work.retention import BATCH, BATCHES_PER_SWEEP
from tests.core import Core, ManualClock, build_core, quick_config
from tests.unit.test_http import serving

HOUR = 3600.0


def registry_with_retentions() -> HandlerRegistry:
    """``plain`` goes by the setting, ``short`` keeps a minute, ``keep`` forever."""
    registry = HandlerRegistry()

    @registry.handler
    def plain(text: str) -> str:
        return text

    @registry.handler(retention_s=60)
    def short(text: str) -> str:
        return text

    @registry.handler(retention_s=0)
    def keep(text: str) -> str:
        return text

    return registry


def core_with(retention_s: float, **config: Any) -> Core:
    return build_core(
        registry=registry_with_retentions(), config=quick_config(retention_s=retention_s, **config)
    )


async def finish(core: Core, status: TaskStatus, task_type: str = "plain") -> Task:
    """A task of ``task_type`` submitted and brought to ``status`` now."""
    task = await core.service.submit(task_type, "x")
    if status is TaskStatus.CANCELLED:
        return await core.service.cancel(task.id)
    now = core.clock.now()
    claimed = await core.tasks.claim(task.id, now, core.config.lease)
    assert claimed is not None
    done = claimed.complete("x", now) if status is TaskStatus.COMPLETED else claimed.fail("boom", now, None)
    assert await core.transitions.record(done)
    return done


def advance(core: Core, seconds: float) -> None:
    clock = core.clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds)


async def test_a_sweep_deletes_old_finished_tasks_of_every_status_and_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = core_with(retention_s=HOUR)
    old = [
        await finish(core, status)
        for status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)
    ]
    waiting = await core.service.submit("plain", "never run")
    running = await core.tasks.claim(
        (await core.service.submit("plain", "running")).id, core.clock.now(), core.config.lease
    )
    assert running is not None
    advance(core, HOUR / 2)
    young = await finish(core, TaskStatus.COMPLETED)
    assert (await core.sweeper.sweep_once()).pruned == 0  # none an hour old yet

    advance(core, HOUR / 2 + 1)
    caplog.set_level("INFO", logger="taskcore.sweeper")
    report = await core.sweeper.sweep_once()
    assert report.pruned == 3
    assert set(core.db.tasks) == {waiting.id, running.id, young.id}
    assert not core.db.tasks[running.id].is_final  # released by the same sweep (its lease lapsed), kept
    assert core.telemetry.pruned == 3
    assert "3 finished tasks pruned" in caplog.text
    for task in old:
        assert await core.tasks.get(task.id) is None


async def test_a_handlers_retention_overrides_the_setting_and_0_keeps_its_tasks_forever() -> None:
    core = core_with(retention_s=HOUR)
    made = {kind: await finish(core, TaskStatus.COMPLETED, kind) for kind in ("plain", "short", "keep")}
    advance(core, 61)
    assert (await core.sweeper.sweep_once()).pruned == 1
    assert made["short"].id not in core.db.tasks
    advance(core, HOUR)
    assert (await core.sweeper.sweep_once()).pruned == 1
    assert made["plain"].id not in core.db.tasks
    advance(core, 10 * 365 * 24 * HOUR)
    assert (await core.sweeper.sweep_once()).pruned == 0
    assert set(core.db.tasks) == {made["keep"].id}


async def test_a_retention_of_0_keeps_every_task_but_those_of_handlers_with_their_own() -> None:
    core = core_with(retention_s=0)
    plain, short = await finish(core, TaskStatus.FAILED), await finish(core, TaskStatus.FAILED, "short")
    advance(core, 10 * 365 * 24 * HOUR)
    assert (await core.sweeper.sweep_once()).pruned == 1
    assert set(core.db.tasks) == {plain.id}
    assert short.id not in core.db.tasks


async def test_a_sweep_deletes_at_most_its_share_and_the_next_carries_on() -> None:
    """20 batches of 500: a sweep after a long outage never runs long."""
    core = core_with(retention_s=HOUR)
    now = core.clock.now()
    backlog = BATCH * BATCHES_PER_SWEEP + 700
    for _ in range(backlog):
        new = NewTask(type="plain", input="x", max_attempts=1, run_at=now, created_at=now)
        task = Task.created(core.db.next_id(), new).claim(now, core.config.lease).complete("x", now)
        core.db.tasks[task.id] = task
    advance(core, HOUR + 1)
    assert (await core.sweeper.sweep_once()).pruned == 10_000
    assert (await core.sweeper.sweep_once()).pruned == 700
    assert core.db.tasks == {}
    assert core.telemetry.pruned == backlog


async def test_a_failing_database_costs_the_prune_not_the_sweeps_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = core_with(retention_s=HOUR)
    core.queue.available = False
    await core.service.submit("plain", "unpublished")
    core.queue.available = True
    advance(core, 11)
    calls = 0

    async def half_way(cutoffs: PruneCutoffs, limit: int) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RepositoryUnavailable("statement timeout")
        return limit  # a full batch went, then the database failed

    core.pruner.prune = half_way  # type: ignore[method-assign]
    report = await core.sweeper.sweep_once()
    assert (report.redispatched, report.pruned) == (1, BATCH)
    assert core.telemetry.pruned == BATCH
    assert "finished tasks past their retention not deleted this time" in caplog.text


async def test_a_keyed_task_stays_while_its_key_lives_then_goes_in_the_sweep_that_forgets_it() -> None:
    core = core_with(retention_s=60, idempotency_ttl_s=HOUR)
    first, created = await core.service.submit_once("plain", "x", idempotency_key="order-7")
    assert created
    claimed = await core.tasks.claim(first.id, core.clock.now(), core.config.lease)
    assert claimed is not None
    assert await core.transitions.record(claimed.complete("x", core.clock.now()))
    advance(core, 120)
    assert (await core.sweeper.sweep_once()).pruned == 0  # past its retention, but its key lives
    replay, created = await core.service.submit_once("plain", "x", idempotency_key="order-7")
    assert (replay.id, replay.status, created) == (first.id, TaskStatus.COMPLETED, False)

    advance(core, HOUR)
    report = await core.sweeper.sweep_once()
    assert (report.keys_forgotten, report.pruned) == (1, 1)
    again, created = await core.service.submit_once("plain", "x", idempotency_key="order-7")
    assert created
    assert again.id != first.id


async def test_an_idempotent_replay_over_http_after_the_task_was_pruned_is_a_new_task() -> None:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    container = build_container(
        load_settings({"TASKCORE_RETENTION_S": "60", "TASKCORE_IDEMPOTENCY_TTL_S": "3600"}), registry
    )
    clock = ManualClock()
    container.clock.override(providers.Object(clock))
    container.queue.override(providers.Object(MemoryQueue(clock)))
    key = {"Idempotency-Key": "k-1"}
    async with serving(create_app(container)) as client:
        first = (await client.post("/tasks/", json={"input_data": "abc"}, headers=key)).json()
        tasks = container.tasks()
        claimed = await tasks.claim(first["id"], clock.now(), timedelta(seconds=30))
        assert claimed is not None
        assert await container.transitions().record(claimed.complete("cba", clock.now()))
        clock.advance(3601)
        report = await container.sweeper().sweep_once()
        assert (report.keys_forgotten, report.pruned) == (1, 1)
        gone = await client.get(f"/tasks/{first['id']}")
        again = await client.post("/tasks/", json={"input_data": "abc"}, headers=key)
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first["id"]
    # The row is gone; a read may still be answered from the cache (Redis for
    # TASKCORE_CACHE_TTL_S, and each API process's memory of its latest
    # completed tasks), never with an error.
    assert gone.status_code in (200, 404)
    assert await tasks.get(first["id"]) is None


def test_cutoffs_older_than_override_every_retention_but_a_handlers_0() -> None:
    core = core_with(retention_s=HOUR)
    now = core.clock.now()
    assert core.retention.cutoffs() == PruneCutoffs(
        default=now - timedelta(hours=1), by_type={"short": now - timedelta(seconds=60), "keep": None}
    )
    assert core.retention.cutoffs(older_than=timedelta(days=1)) == PruneCutoffs(
        default=now - timedelta(days=1), by_type={"keep": None}
    )
    assert core_with(retention_s=0).retention.cutoffs(older_than=timedelta(0)).default == now


async def test_prune_goes_on_until_none_is_left_and_keeps_what_a_handler_keeps() -> None:
    core = core_with(retention_s=0)
    for kind in ("plain", "short", "keep") * 3:
        await finish(core, TaskStatus.COMPLETED, kind)
    advance(core, 2 * HOUR)
    batches = [batch async for batch in core.retention.prune(older_than=timedelta(hours=1))]
    assert sum(batches) == 6
    assert {task.type for task in core.db.tasks.values()} == {"keep"}


def test_a_handlers_retention_must_not_be_negative() -> None:
    registry = HandlerRegistry()
    with pytest.raises(HandlerRegistrationError, match="retention_s"):
        registry.register(lambda text: text, name="bad", retention_s=-1)
    assert registry.register(lambda text: text, name="audit", retention_s=0).retention_s == 0


def test_the_setting_defaults_to_a_week_and_0_turns_it_off() -> None:
    assert load_settings({}).core.retention_s == 7 * 24 * HOUR
    assert load_settings({"TASKCORE_RETENTION_S": "0"}).core.retention_s == 0
    with pytest.raises(ConfigurationError, match="TASKCORE_RETENTION_S"):
        load_settings({"TASKCORE_RETENTION_S": "-5"})


def test_pruned_tasks_are_counted_in_prometheus() -> None:
    registry = CollectorRegistry()
    telemetry = PrometheusTelemetry(registry)
    telemetry.tasks_pruned(500)
    telemetry.tasks_pruned(20)
    assert registry.get_sample_value("taskcore_tasks_pruned_total") == 520


def run_cli(*args: str, **env: str) -> Result:
    """``taskcore`` in this process, with only the ``TASKCORE_*`` variables given."""
    cleared: dict[str, str | None] = {name: None for name in os.environ if name.startswith("TASKCORE_")}
    return CliRunner().invoke(main, list(args), env={**cleared, **env})


def test_prune_needs_the_database() -> None:
    result = run_cli("prune")
    assert result.exit_code == 1
    assert "TASKCORE_DATABASE_URL not set" in result.output


def test_prune_with_every_type_kept_says_so_and_touches_nothing() -> None:
    """Decided before connecting: the URL names no server."""
    result = run_cli(
        "prune", TASKCORE_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", TASKCORE_RETENTION_S="0"
    )
    assert result.exit_code == 0, result.output
    assert "nothing pruned: every type is kept forever" in result.output


def test_prune_refuses_an_age_it_cannot_read() -> None:
    result = run_cli("prune", "--older-than", "a while")
    assert result.exit_code == 2
    assert "--older-than must look like 30s, 15m, 1h or 7d" in result.output
