"""``POST /tasks/batch``: up to 1,000 tasks in one request, all stored or none.

Each item is what ``POST /tasks/`` takes; a bad one is a 422 naming its
position (``items[3]: ...``) and nothing is stored. The batch is stored in
one transaction and its wake-ups and cache writes go out together, which is
what makes it many times cheaper than as many single submits.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.params import JSONBody

from taskcore.entrypoints.http.auth import WRITE, authorized
from taskcore.entrypoints.http.schemas import SubmitTask, TaskView
from taskcore.entrypoints.http.tasks_controller import AUTH, Tasks, problems
from taskcore.errors import InvalidInput
from taskcore.model.batch import MAX_BATCH, TaskRequest


class SubmitBatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Not ``tasks``: Litestar reports an error at a body key that is also a
    # dependency's name (``tasks`` is one) as a 500 of its own.
    items: Annotated[list[SubmitTask], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class BatchView(msgspec.Struct, kw_only=True):
    items: list[TaskView]  # in the order given
    deduplicated: list[int]  # positions whose unique key an unfinished task held: that task is answered


class BatchController(Controller):
    path = "/tasks/batch"
    tags = ["tasks"]

    @post(
        "/",
        status_code=201,
        operation_id="submitTasks",
        summary="Submit up to 1,000 tasks at once",
        responses=problems(400, *AUTH, 413, 422, 429, 503),
    )
    async def submit(
        self, data: JSONBody[SubmitBatch], request: Request[Any, Any, Any], tasks: Tasks
    ) -> Response[BatchView]:
        """All or nothing: every task is checked first (a bad one is a 422
        naming its position, ``items[i]``), then all are stored in one
        transaction and woken together. The answer lists the tasks in the
        order given."""
        caller = authorized(request, WRITE)
        now = tasks.clock.now()
        requests = []
        for index, task in enumerate(data.items):
            try:
                delay = task.delay(now)
            except InvalidInput as exc:
                raise InvalidInput(f"items[{index}]: {exc}", index=index) from exc
            requests.append(
                TaskRequest(
                    type=task.type,
                    input=task.input_data,
                    delay=delay,
                    priority=task.priority,
                    queue=task.queue,
                    unique_key=task.unique_key,
                    after=tuple(task.after),
                    run_anyway=task.run_anyway,
                    callback_url=task.callback_url,
                    tags=tuple(task.tags),
                    metadata=task.metadata,
                )
            )
        submitted = await tasks.service.submit_many(requests, owner=caller.sub)
        view = BatchView(
            items=[TaskView.of(one.task) for one in submitted],
            deduplicated=[index for index, one in enumerate(submitted) if one.deduplicated],
        )
        return Response(view, status_code=201)
