"""Who is calling: JWT bearer tokens, and the scopes a route requires.

Tokens are verified with pyjwt: HS256 with a shared secret, or RS256/ES256
with a public key; ``exp`` is required, ``iss``/``aud`` are checked when
configured. The caller becomes a ``Principal`` on the request; each handler
checks its scopes. With auth off (``TASKCORE_AUTH=none``) every caller is one
anonymous principal holding every scope.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

READ = "tasks:read"
WRITE = "tasks:write"
ADMIN = "tasks:admin"
ALL_SCOPES = frozenset({READ, WRITE, ADMIN})

VERIFIED_TOKENS = 4096
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="taskcore"'}


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    @property
    def owner_filter(self) -> str | None:
        """The owner whose tasks this caller sees; ``None`` for all of them."""
        return None if self.is_admin else self.sub


ANONYMOUS = Principal(sub="anonymous", scopes=ALL_SCOPES)


@dataclass(frozen=True, slots=True)
class TokenVerifier:
    key: str
    algorithms: tuple[str, ...]
    issuer: str | None = None
    audience: str | None = None
    leeway_s: float = 0.0

    # Verified tokens until their ``exp``: a client sends the same token with
    # every request, and checking its signature each time cost ~7% of the
    # API's CPU. Bounded; only tokens that verified are kept.
    _verified: OrderedDict[str, tuple[Principal, float]] = field(
        default_factory=OrderedDict, compare=False, repr=False
    )

    def verify(self, token: str) -> Principal:
        """A principal, or ``NotAuthorizedException`` saying why not (never the token)."""
        known = self._verified.get(token)
        if known is not None:
            principal, expires = known
            if time.time() < expires + self.leeway_s:
                return principal
            del self._verified[token]
        principal, expires = self._decode(token)
        self._verified[token] = (principal, expires)
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=list(self.algorithms),
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway_s,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"invalid token: {exc}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _unauthorized("invalid token: 'sub' must be a non-empty string")
        scope = claims.get("scope", "")
        scopes = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        return Principal(sub=sub, scopes=scopes), float(claims["exp"])


def _unauthorized(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail=detail, headers=BEARER_CHALLENGE)


def jwt_middleware(verifier: TokenVerifier, exclude: list[str]) -> Callable[[ASGIApp], ASGIApp]:
    class BearerAuth(AbstractAuthenticationMiddleware):
        async def authenticate_request(
            self, connection: ASGIConnection[Any, Any, Any, Any]
        ) -> AuthenticationResult:
            header = connection.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("a bearer token is required")
            return AuthenticationResult(user=verifier.verify(token.strip()), auth=None)

    def build(app: ASGIApp) -> ASGIApp:
        return BearerAuth(app, exclude=exclude)

    return build


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    return user if isinstance(user, Principal) else ANONYMOUS


def authorized(connection: ASGIConnection[Any, Any, Any, Any], scope: str) -> Principal:
    """The caller, if its token carries ``scope`` (or ``tasks:admin``); 403
    otherwise. Called by each handler rather than as a Litestar guard, which
    copies the route handler on every call."""
    principal = principal_of(connection)
    if scope not in principal.scopes and not principal.is_admin:
        raise PermissionDeniedException(detail=f"the token lacks the {scope!r} scope")
    return principal


def asked_owner(caller: Principal, asked: str | None) -> str | None:
    """The owner whose tasks a call with an ``owner`` filter acts on (``None``:
    every owner's): anyone's for ``tasks:admin``, else only the caller's own
    (naming another owner is a 403, not an empty answer)."""
    if caller.is_admin:
        return asked
    if asked is not None and asked != caller.sub:
        raise PermissionDeniedException(detail="another owner's tasks need the 'tasks:admin' scope")
    return caller.sub
