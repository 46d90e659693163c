"""``/tasks``: submit and read."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from taskcore.entrypoints.http.schemas import SubmitTask, TaskView
from taskcore.service import TaskService

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
