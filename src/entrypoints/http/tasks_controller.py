"""``/tasks``: submit and read."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from taskcore.entrypoints.http.schemas import SubmitTask, TaskPage, TaskView
from taskcore.service import TaskService
from taskcore.status import TaskStatus

TaskId = Annotated[int, Parameter(ge=1, le=2**63 - 1, description="The task's id.")]
Service = NamedDependency[TaskService]


class TaskController(Controller):
    path = "/tasks"
    tags = ["tasks"]

    @post("/", status_code=201, summary="Submit a task")
    async def submit(self, data: JSONBody[SubmitTask], service: Service) -> TaskView:
        """Store the task as PENDING and queue it; answers before it runs."""
        task = await service.submit(data.type, data.input_data)
        return TaskView.of(task)

    @get("/{task_id:int}", summary="Read a task")
    async def read(self, task_id: TaskId, service: Service) -> TaskView:
        """The task's current status, and its result once COMPLETED."""
        return TaskView.of(await service.get(task_id))

    @get("/", summary="List tasks in one status")
    async def list_tasks(
        self,
        service: Service,
        status: Annotated[TaskStatus, Parameter(description="Which tasks, e.g. FAILED.")],
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> TaskPage:
        """Newest first. FAILED tasks can be re-queued with ``POST /tasks/{id}/retry``."""
        return TaskPage(items=[TaskView.of(t) for t in await service.list_by_status(status, limit)])

    @post("/{task_id:int}/cancel", status_code=200, summary="Cancel a task")
    async def cancel(self, task_id: TaskId, service: Service) -> TaskView:
        """PENDING: cancelled at once. PROCESSING: the worker stops the handler at
        its next heartbeat and discards any result. Finished: 409."""
        return TaskView.of(await service.cancel(task_id))

    @post("/{task_id:int}/retry", status_code=200, summary="Re-queue a FAILED or CANCELLED task")
    async def retry(self, task_id: TaskId, service: Service) -> TaskView:
        """Runs it again with a fresh set of attempts; 409 in any other status."""
        return TaskView.of(await service.requeue(task_id))
