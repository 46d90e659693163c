from __future__ import annotations

import pytest

from taskcore.adapters.memory import MemoryRepository
from tests.contracts.repository import RepositoryContract


class TestMemoryRepository(RepositoryContract):
    @pytest.fixture
    def repository(self) -> MemoryRepository:
        return MemoryRepository()
