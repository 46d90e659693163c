"""What the contract run sends and how the API under test is configured.

The API runs without authentication for now. When auth lands, switch it on in
``api_env`` (e.g. ``TASKCORE_AUTH`` and its key) and return a bearer token from
``auth_headers``; the schemathesis run sends those headers with every request.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def api_env() -> dict[str, str]:
    """Extra environment for the ``taskcore api`` process under test."""
    return {}


@pytest.fixture
def auth_headers() -> dict[str, str]:
    """Headers sent with every generated request, e.g. ``{"Authorization": "Bearer <jwt>"}``."""
    return {}
