from __future__ import annotations

import pytest

from tests.contracts.repository import RepositoryContract

pytestmark = pytest.mark.integration


class TestPostgresRepository(RepositoryContract):
    """The contract against PostgreSQL; the ``repository`` fixture is in conftest.py."""
