"""What the contract run sends and how the API under test is configured.

The API runs without authentication for now (the ``stack`` sets
``TASKCORE_AUTH=none``). To run it with auth, return ``TASKCORE_AUTH=jwt`` and
``TASKCORE_JWT_SECRET`` from ``service_env`` and a bearer token from
``auth_headers`` (e.g. ``jwt.encode({"sub": ..., "scope": "tasks:read tasks:write",
"exp": ...}, secret, algorithm="HS256")``); schemathesis sends those headers with
every request and, as the schema then declares bearer security, also checks that
requests without them are refused.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def service_env() -> dict[str, str]:
    """Extra environment for the ``taskcore api`` and ``taskcore worker`` under test."""
    return {}


@pytest.fixture
def auth_headers() -> dict[str, str]:
    """Headers sent with every generated request, e.g. ``{"Authorization": "Bearer <jwt>"}``."""
    return {}
