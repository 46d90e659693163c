"""Submitting, reading and cancelling workflows.

A workflow is stored whole, in one transaction (all its steps or none), and
then each step is an ordinary task: the ones that run after nothing are
woken at once, the others wait blocked until the steps they run after have
ended (``model/workflows.py``), which the transition writer settles as each
one ends. Validation happens before anything is stored, naming the step
that is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from taskcore.errors import InvalidInput, InvalidTransition, UnknownTaskType
from taskcore.model.status import TaskStatus
from taskcore.model.tags import check_metadata, check_tags, merged
from taskcore.model.workflows import StepSpec, StoredWorkflow, WorkflowNotFound, ordered_steps
from taskcore.ports import Clock, WorkflowStore
from taskcore.submit.service import CAS_ATTEMPTS, TaskService
from taskcore.transitions.writer import Transitions

CANCELLED_WITH_WORKFLOW = "cancelled with its workflow"


class Labels(NamedTuple):
    """A workflow's own tags and metadata, checked, for each step to add its own to."""

    tags: tuple[str, ...]
    metadata: dict[str, Any]


class WorkflowService:
    def __init__(
        self, *, store: WorkflowStore, tasks: TaskService, transitions: Transitions, clock: Clock
    ) -> None:
        self._store = store
        self._tasks = tasks
        self._transitions = transitions
        self._clock = clock

    async def submit(
        self,
        steps: Sequence[StepSpec],
        *,
        name: str | None = None,
        owner: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> StoredWorkflow:
        """Store the steps (each's input checked against its handler's type)
        and wake the ones that run after nothing; the stored workflow, its
        steps in the order given. ``tags`` and ``metadata`` go to every step,
        with each step's own added (``model/tags.py`` ``merged``)."""
        ordered = ordered_steps(steps)
        labels = Labels(check_tags(tags), check_metadata(metadata))
        # One submit span for the workflow: every step carries its context.
        with self._tasks.tracing.submitting(None, count=len(ordered)) as span:
            stored = await self._add(ordered, name, owner, span.trace_context, labels)
            for task in stored.steps:
                span.stored(task, created=True)
        given = {step.name: index for index, step in enumerate(steps)}
        return StoredWorkflow(
            id=stored.id,
            name=stored.name,
            owner=stored.owner,
            created_at=stored.created_at,
            steps=sorted(stored.steps, key=lambda task: given[task.step or ""]),
        )

    async def _add(
        self,
        ordered: Sequence[StepSpec],
        name: str | None,
        owner: str | None,
        trace_context: str | None,
        labels: Labels,
    ) -> StoredWorkflow:
        """Validate and store the steps (in dependency order), wake the ones that run after nothing."""
        position = {step.name: index for index, step in enumerate(ordered)}
        news = []
        for step in ordered:
            try:
                tags, metadata = merged(labels.tags, labels.metadata, step.tags, step.metadata or {})
                news.append(
                    self._tasks.new_task(
                        step.type,
                        step.input,
                        owner=owner,
                        priority=step.priority if step.priority is not None else 0,
                        queue=step.queue,
                        run_anyway=step.run_anyway,
                        step=step.name,
                        trace_context=trace_context,
                        tags=tags,
                        metadata=metadata,
                    )
                )
            except (InvalidInput, UnknownTaskType) as exc:
                raise InvalidInput(f"step {step.name!r}: {exc}", step=step.name) from exc
        stored = await self._store.add_workflow(
            name=name,
            owner=owner,
            created_at=self._clock.now(),
            steps=news,
            after=[[position[parent] for parent in step.after] for step in ordered],
        )
        for task in stored.steps:
            await self._transitions.created(task)
        return stored

    async def get(self, workflow_id: int, *, owner: str | None = None) -> StoredWorkflow:
        """``owner``'s workflow (``None``: anyone's), or ``WorkflowNotFound``."""
        found = await self._store.workflow(workflow_id)
        if found is None or not found.visible_to(owner):
            raise WorkflowNotFound(f"workflow {workflow_id} not found", workflow_id=workflow_id)
        return found

    async def cancel(self, workflow_id: int, *, owner: str | None = None) -> StoredWorkflow:
        """Cancel every step not ended yet (a running one's worker stops it at
        its next heartbeat); safe to repeat. The workflow as it is after."""
        for _ in range(CAS_ATTEMPTS):
            workflow = await self.get(workflow_id, owner=owner)
            unfinished = [
                step for step in workflow.steps if step.status in (TaskStatus.PENDING, TaskStatus.PROCESSING)
            ]
            if not unfinished:
                return workflow
            now = self._clock.now()
            for step in unfinished:  # a lost race (the step moved on) is seen in the next round
                await self._transitions.record(step.cancel(now, CANCELLED_WITH_WORKFLOW))
        raise InvalidTransition(f"workflow {workflow_id} keeps changing; try again", workflow_id=workflow_id)
