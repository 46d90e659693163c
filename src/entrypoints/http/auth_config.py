"""Turning the ``TASKCORE_AUTH`` and ``TASKCORE_JWT_*`` settings into a verifier.

``taskcore dev`` defaults to no auth, ``taskcore api`` to JWT; an API that
would run with JWT but has no key refuses to start rather than run open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from taskcore.entrypoints.http.auth import TokenVerifier
from taskcore.entrypoints.settings import Settings
from taskcore.errors import ConfigurationError

AuthMode = Literal["jwt", "none"]

HS_ALGORITHMS: tuple[str, ...] = ("HS256",)
PUBLIC_KEY_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")


def auth_mode(settings: Settings, default: AuthMode) -> AuthMode:
    return settings.auth or default


def build_verifier(settings: Settings, default: AuthMode) -> TokenVerifier | None:
    """``None`` when auth is off."""
    if auth_mode(settings, default) == "none":
        return None
    if settings.jwt_public_key_file:
        try:
            key = Path(settings.jwt_public_key_file).read_text()
        except OSError as exc:
            raise ConfigurationError(f"TASKCORE_JWT_PUBLIC_KEY_FILE: cannot read it: {exc}") from exc
        algorithms = PUBLIC_KEY_ALGORITHMS
    elif settings.jwt_secret:
        key, algorithms = settings.jwt_secret, HS_ALGORITHMS
    else:
        raise ConfigurationError(
            "TASKCORE_AUTH=jwt needs TASKCORE_JWT_SECRET or TASKCORE_JWT_PUBLIC_KEY_FILE "
            "(set TASKCORE_AUTH=none to run the API without authentication)"
        )
    return TokenVerifier(
        key=key,
        algorithms=algorithms,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
    )
