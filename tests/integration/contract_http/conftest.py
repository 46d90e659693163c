"""What the contract run sends and how the API under test is configured.

The run happens twice: with authentication off (``TASKCORE_AUTH=none``, the
``stack`` default) and with it on (``TASKCORE_AUTH=jwt``), sending a token
that holds every scope. With auth on the schema declares bearer security, so
schemathesis also checks that requests without the token are refused.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from taskcore.entrypoints.http.auth import ALL_SCOPES
from taskcore.entrypoints.settings import load_settings
from taskcore.entrypoints.tokens import mint


@pytest.fixture(scope="module")
def jwt_secret() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture(params=["auth-off", "auth-jwt"])
def auth(request: pytest.FixtureRequest) -> bool:
    """Whether the API under test requires a bearer token."""
    return bool(request.param == "auth-jwt")


# A long poll or an event stream on a task that stays PENDING (scheduled far
# ahead) would hold each such request until schemathesis' request timeout.
SHORT_WAITS = {"TASKCORE_WAIT_MAX_S": "1", "TASKCORE_EVENTS_MAX_S": "1"}


@pytest.fixture
def service_env(auth: bool, jwt_secret: str) -> dict[str, str]:
    """Extra environment for the ``taskcore api`` and ``taskcore worker`` under test."""
    if not auth:
        return dict(SHORT_WAITS)
    return {**SHORT_WAITS, "TASKCORE_AUTH": "jwt", "TASKCORE_JWT_SECRET": jwt_secret}


@pytest.fixture
def auth_headers(auth: bool, jwt_secret: str) -> dict[str, str]:
    """Headers sent with every generated request: a token with every scope when auth is on."""
    if not auth:
        return {}
    settings = load_settings({}, jwt_secret=jwt_secret)
    token = mint(settings, sub="schemathesis", scopes=sorted(ALL_SCOPES), ttl=timedelta(hours=1))
    return {"Authorization": f"Bearer {token}"}
