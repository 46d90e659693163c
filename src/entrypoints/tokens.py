"""``taskcore token``: mint a development token from the configured secret."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import jwt

from taskcore.entrypoints.settings import Settings
from taskcore.errors import ConfigurationError

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, option: str = "--ttl") -> timedelta:
    """``30s``, ``15m``, ``1h``, ``7d``; ``option`` names the flag in the error."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ConfigurationError(f"{option} must look like 30s, 15m, 1h or 7d, got {text!r}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def mint(settings: Settings, *, sub: str, scopes: list[str], ttl: timedelta) -> str:
    if not settings.jwt_secret:
        raise ConfigurationError("TASKCORE_JWT_SECRET is not set: `taskcore token` signs with it (HS256)")
    now = int(time.time())
    claims: dict[str, object] = {"sub": sub, "iat": now, "exp": now + int(ttl.total_seconds())}
    if scopes:
        claims["scope"] = " ".join(scopes)
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
