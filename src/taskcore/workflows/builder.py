"""Building a workflow in Python: steps, chains and groups.

```python
flow = Workflow("nightly")
extract = flow.step("extract", "fetch", {"url": url})
clean, enrich = flow.step("clean", "clean", {}), flow.step("enrich", "enrich", {})
flow.chain(extract, flow.group(clean, enrich), flow.step("load", "load", {}))
stored = await container.workflows().submit(flow.specs(), name=flow.name)
```

A chain makes each item run after the one before (a group's steps all run
after the item before it, and the item after the group after all of them);
a step's own ``after`` adds to that. The builder only records; the service
checks the graph (names, cycles) and the inputs when it is submitted.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from taskcore.errors import InvalidInput
from taskcore.model.workflows import StepSpec


@dataclass(frozen=True, slots=True)
class Step:
    """A handle on a step of a ``Workflow``: pass it to ``after``, ``chain`` or ``group``."""

    name: str


@dataclass(frozen=True, slots=True)
class Group:
    """Steps that run side by side: in a chain, after the item before, and before the item after."""

    steps: tuple[Step, ...]


@dataclass
class _Draft:
    type: str
    input: Any
    after: list[str] = field(default_factory=list)
    run_anyway: bool = False
    priority: int | None = None
    queue: str | None = None


class Workflow:
    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._drafts: dict[str, _Draft] = {}

    def step(
        self,
        name: str,
        task_type: str,
        input_data: Any,
        *,
        after: tuple[Step, ...] | list[Step] = (),
        run_anyway: bool = False,
        priority: int | None = None,
        queue: str | None = None,
    ) -> Step:
        """Add a step: a task of ``task_type`` with ``input_data``, named ``name``
        (its handler reads the results of the steps it runs after by these
        names, ``TaskContext.results``). ``run_anyway``: start even if a step
        it runs after FAILED or was CANCELLED."""
        if name in self._drafts:
            raise InvalidInput(f"two steps are named {name!r}")
        self._drafts[name] = _Draft(
            type=task_type,
            input=input_data,
            after=[step.name for step in after],
            run_anyway=run_anyway,
            priority=priority,
            queue=queue,
        )
        return Step(name)

    def group(self, *steps: Step) -> Group:
        return Group(steps)

    def chain(self, *items: Step | Group) -> Step | Group:
        """Each item runs after the one before; returns the last, to chain on."""
        for before, item in itertools.pairwise(items):
            for step in _steps(item):
                draft = self._drafts[step.name]
                draft.after.extend(parent.name for parent in _steps(before) if parent.name not in draft.after)
        return items[-1]

    def specs(self) -> list[StepSpec]:
        """The steps as ``WorkflowService.submit`` takes them, in the order added."""
        return [
            StepSpec(
                name=name,
                type=draft.type,
                input=draft.input,
                after=tuple(draft.after),
                run_anyway=draft.run_anyway,
                priority=draft.priority,
                queue=draft.queue,
            )
            for name, draft in self._drafts.items()
        ]


def _steps(item: Step | Group) -> tuple[Step, ...]:
    return item.steps if isinstance(item, Group) else (item,)
