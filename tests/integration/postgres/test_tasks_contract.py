"""The task-table contracts (``tests/contracts/tasks.py``, ``progress.py``) on ``PostgresTasks``;
the fixtures are in conftest.py."""

from __future__ import annotations

import pytest

from tests.contracts.progress import ProgressContract
from tests.contracts.tasks import (
    AttemptStoreContract,
    TaskFinderContract,
    TaskStoreContract,
    TransitionStoreContract,
)
from tests.contracts.unique import UniqueKeyContract

pytestmark = pytest.mark.integration


class TestPostgresTaskStore(TaskStoreContract):
    pass


class TestPostgresTaskFinder(TaskFinderContract):
    pass


class TestPostgresAttemptStore(AttemptStoreContract):
    pass


class TestPostgresTransitionStore(TransitionStoreContract):
    pass


class TestPostgresUniqueKeys(UniqueKeyContract):
    pass


class TestPostgresProgress(ProgressContract):
    pass
