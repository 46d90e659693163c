"""The workflows contract (``tests/contracts/workflows.py``) on ``MemoryWorkflows``."""

from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryWorkflows
from tests.contracts.workflows import WorkflowsContract
from tests.core import Core


@pytest.fixture
def workflows(core: Core) -> MemoryWorkflows:
    return core.workflow_store


class TestMemoryWorkflows(WorkflowsContract):
    pass
