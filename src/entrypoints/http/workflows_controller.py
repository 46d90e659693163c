"""``/workflows``: submit a graph of steps at once, read it, cancel it.

Each step is an ordinary task (``GET /tasks/{id}`` works on it too); the
workflow is how they were submitted together and what ``GET /workflows/{id}``
shows of them. An owner sees only their own, as with tasks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from taskcore.entrypoints.http.auth import READ, WRITE, authorized
from taskcore.entrypoints.http.schemas import Metadata, Tags, TaskView
from taskcore.entrypoints.http.tasks_controller import AUTH, problems
from taskcore.model.task import MAX_PRIORITY, MAX_TASK_ID, MIN_PRIORITY
from taskcore.model.workflows import MAX_AFTER, MAX_STEPS, StepSpec, StoredWorkflow
from taskcore.workflows.service import WorkflowService

Workflows = NamedDependency[WorkflowService]
WorkflowId = Annotated[
    int,
    Parameter(
        ge=1,
        le=MAX_TASK_ID,
        description="The workflow's id.",
        schema_extra={"minimum": 1, "maximum": MAX_TASK_ID},
    ),
]


class StepIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100, description="Unique in the workflow.")]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Registered task type.")]
    input_data: Annotated[Any, msgspec.Meta(description="The handler's input, checked as a submit's is.")]
    after: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=100)]],
        msgspec.Meta(max_length=MAX_AFTER, description="Names of the steps it runs after."),
    ] = msgspec.field(default_factory=list)
    run_anyway: Annotated[
        bool, msgspec.Meta(description="Start after them even if one FAILED or was CANCELLED.")
    ] = False
    priority: Annotated[int, msgspec.Meta(ge=MIN_PRIORITY, le=MAX_PRIORITY)] | None = None
    queue: Annotated[str, msgspec.Meta(min_length=1, max_length=63)] | None = None
    tags: Tags = msgspec.field(default_factory=list)
    metadata: Metadata = msgspec.field(default_factory=dict)

    def spec(self) -> StepSpec:
        return StepSpec(
            name=self.name,
            type=self.type,
            input=self.input_data,
            after=tuple(self.after),
            run_anyway=self.run_anyway,
            priority=self.priority,
            queue=self.queue,
            tags=tuple(self.tags),
            metadata=self.metadata,
        )


class SubmitWorkflow(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    steps: Annotated[list[StepIn], msgspec.Meta(min_length=1, max_length=MAX_STEPS)]
    tags: Annotated[Tags, msgspec.Meta(description="Every step's, before the step's own.")] = msgspec.field(
        default_factory=list
    )
    metadata: Annotated[
        Metadata, msgspec.Meta(description="Every step's; a step's own keys win over these.")
    ] = msgspec.field(default_factory=dict)


class WorkflowView(msgspec.Struct, kw_only=True):
    id: int
    name: str | None
    status: str  # RUNNING, COMPLETED, FAILED or CANCELLED
    created_at: datetime
    steps: list[TaskView]

    @classmethod
    def of(cls, workflow: StoredWorkflow) -> WorkflowView:
        return cls(
            id=workflow.id,
            name=workflow.name,
            status=workflow.status,
            created_at=workflow.created_at,
            steps=[TaskView.of(step) for step in workflow.steps],
        )


class WorkflowController(Controller):
    path = "/workflows"
    tags = ["workflows"]

    @post(
        "/",
        status_code=201,
        operation_id="submitWorkflow",
        summary="Submit a workflow",
        responses=problems(400, *AUTH, 413, 422, 503),
    )
    async def submit(
        self, data: JSONBody[SubmitWorkflow], request: Request[Any, Any, Any], workflows: Workflows
    ) -> Response[WorkflowView]:
        """Stores every step in one transaction (all or none: an invalid step
        is a 422 naming it, and nothing is stored), then runs each step once
        the steps it runs after have ended; a step's handler reads their
        results. A step after one that FAILED or was CANCELLED is cancelled,
        unless it runs anyway."""
        caller = authorized(request, WRITE)
        stored = await workflows.submit(
            [step.spec() for step in data.steps],
            name=data.name,
            owner=caller.sub,
            tags=data.tags,
            metadata=data.metadata,
        )
        return Response(
            WorkflowView.of(stored), status_code=201, headers={"Location": f"/workflows/{stored.id}"}
        )

    @get(
        "/{workflow_id:int}",
        operation_id="getWorkflow",
        summary="Read a workflow and its steps",
        responses=problems(400, *AUTH, 404, 422, 503),
    )
    async def read(
        self, workflow_id: WorkflowId, request: Request[Any, Any, Any], workflows: Workflows
    ) -> WorkflowView:
        caller = authorized(request, READ)
        return WorkflowView.of(await workflows.get(workflow_id, owner=caller.owner_filter))

    @post(
        "/{workflow_id:int}/cancel",
        status_code=200,
        operation_id="cancelWorkflow",
        summary="Cancel a workflow's unfinished steps",
        responses=problems(400, *AUTH, 404, 422, 503),
    )
    async def cancel(
        self, workflow_id: WorkflowId, request: Request[Any, Any, Any], workflows: Workflows
    ) -> WorkflowView:
        """Every step not ended yet is cancelled (a running one's worker stops
        it at its next heartbeat); safe to repeat."""
        caller = authorized(request, WRITE)
        return WorkflowView.of(await workflows.cancel(workflow_id, owner=caller.owner_filter))
