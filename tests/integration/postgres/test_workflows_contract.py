"""The workflows contract (``tests/contracts/workflows.py``) on ``PostgresWorkflows``."""

from __future__ import annotations

import pytest

from taskcore.adapters.postgres import PostgresDatabase, PostgresWorkflows
from tests.contracts.workflows import WorkflowsContract

pytestmark = pytest.mark.integration


@pytest.fixture
def workflows(db: PostgresDatabase) -> PostgresWorkflows:
    return PostgresWorkflows(db)


class TestPostgresWorkflows(WorkflowsContract):
    pass
