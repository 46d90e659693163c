"""JWT authentication, scopes and ownership through the HTTP API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from litestar.testing import AsyncTestClient

from taskcore import HandlerRegistry, register_builtins
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import load_settings
from taskcore.entrypoints.tokens import mint, parse_duration
from taskcore.errors import ConfigurationError

SECRET = "a-test-secret-that-is-long-enough-for-hs256!"
PROBLEM = "application/problem+json"
RW = "tasks:read tasks:write"

Client = AsyncTestClient  # type: ignore[type-arg]


def token(sub: str = "alice", scope: str | None = RW, key: str = SECRET, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + 600, **claims}
    if scope is not None:
        payload["scope"] = scope
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


async def make_client(**settings: Any) -> AsyncTestClient:  # type: ignore[type-arg]
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    container = build_container(load_settings({}, **settings), registry)
    return AsyncTestClient(create_app(container, embedded_worker=True, default_auth="jwt"))


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with await make_client(jwt_secret=SECRET) as client:
        yield client


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Basic YWxpY2U6cHc="},
        {"authorization": "Bearer"},
        {"authorization": "Bearer not.a.jwt"},
        bearer(token(key="another-secret-that-is-long-enough-for-hs256")),
        bearer(token(exp=int(time.time()) - 60)),
        bearer(token(exp=None)),
        bearer(token(sub=None)),
        bearer(jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, "", algorithm="none")),
    ],
)
async def test_missing_or_bad_tokens_are_401_with_a_bearer_challenge(
    client: Client, headers: dict[str, str]
) -> None:
    for response in (
        await client.post("/tasks/", json={"input_data": "x"}, headers=headers),
        await client.get("/tasks/1", headers=headers),
    ):
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_docs_and_health_need_no_token(client: Client) -> None:
    assert (await client.get("/docs/openapi.json")).status_code == 200
    assert (await client.get("/health/live")).status_code == 200
    schema = (await client.get("/docs/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"


async def test_a_token_without_the_scope_is_403(client: Client) -> None:
    reader = bearer(token(scope="tasks:read"))
    response = await client.post("/tasks/", json={"input_data": "x"}, headers=reader)
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    writer = bearer(token(scope="tasks:write"))
    created = (await client.post("/tasks/", json={"input_data": "x"}, headers=writer)).json()
    assert (await client.get(f"/tasks/{created['id']}", headers=writer)).status_code == 403
    assert (await client.get(f"/tasks/{created['id']}", headers=bearer(token(scope=None)))).status_code == 403


async def test_callers_only_ever_see_their_own_tasks(client: Client) -> None:
    alice, bob = bearer(token("alice")), bearer(token("bob"))
    admin = bearer(token("root", scope="tasks:admin"))
    mine = (await client.post("/tasks/", json={"input_data": "abc"}, headers=alice)).json()
    task_id = mine["id"]
    assert (await client.get(f"/tasks/{task_id}", headers=alice)).status_code == 200
    for path, method in [
        (f"/tasks/{task_id}", "GET"),
        (f"/tasks/{task_id}/cancel", "POST"),
        (f"/tasks/{task_id}/retry", "POST"),
        (f"/tasks/{task_id}?wait=1", "GET"),
        (f"/tasks/{task_id}/events", "GET"),
        (f"/tasks/{task_id}/detail", "GET"),
    ]:
        response = await client.request(method, path, headers=bob)
        assert response.status_code == 404, path
        assert response.json()["detail"] == f"task {task_id} not found"  # same as a missing id
    for status in ("PENDING", "PROCESSING", "COMPLETED"):
        listed = (await client.get("/tasks", params={"status": status}, headers=bob)).json()
        assert listed["items"] == []
    assert (await client.get(f"/tasks/{task_id}", headers=admin)).status_code == 200
    assert (await client.post(f"/tasks/{task_id}/cancel", headers=alice)).status_code in (200, 409)


async def test_issuer_and_audience_are_checked_when_configured() -> None:
    async with await make_client(
        jwt_secret=SECRET, jwt_issuer="https://id.example", jwt_audience="taskcore"
    ) as c:
        good = bearer(token(iss="https://id.example", aud="taskcore"))
        assert (await c.post("/tasks/", json={"input_data": "x"}, headers=good)).status_code == 201
        for claims in ({"iss": "https://evil.example", "aud": "taskcore"}, {"iss": "https://id.example"}):
            response = await c.post("/tasks/", json={"input_data": "x"}, headers=bearer(token(**claims)))
            assert response.status_code == 401


async def test_leeway_accepts_a_just_expired_token() -> None:
    just_expired = bearer(token(exp=int(time.time()) - 5))
    async with await make_client(jwt_secret=SECRET, jwt_leeway_s=30) as c:
        assert (await c.get("/tasks/1", headers=just_expired)).status_code == 404


async def test_es256_tokens_with_a_public_key_file(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(public_pem)
    signed = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 60, "scope": RW}, private, algorithm="ES256"
    )
    async with await make_client(jwt_public_key_file=str(key_file)) as c:
        assert (await c.post("/tasks/", json={"input_data": "x"}, headers=bearer(signed))).status_code == 201
        hs = bearer(token())  # an HS256 token must not pass as ES256
        assert (await c.post("/tasks/", json={"input_data": "x"}, headers=hs)).status_code == 401


async def test_jwt_without_a_key_refuses_to_start() -> None:
    with pytest.raises(ConfigurationError, match="TASKCORE_JWT_SECRET"):
        await make_client()


async def test_auth_none_lets_everyone_in() -> None:
    async with await make_client(auth="none") as c:
        assert (await c.post("/tasks/", json={"input_data": "x"})).status_code == 201


async def test_the_token_command_mints_what_the_api_accepts(client: Client) -> None:
    settings = load_settings({}, jwt_secret=SECRET)
    minted = mint(settings, sub="carol", scopes=["tasks:read", "tasks:write"], ttl=parse_duration("5m"))
    created = await client.post("/tasks/", json={"input_data": "x"}, headers=bearer(minted))
    assert created.status_code == 201
    claims = jwt.decode(minted, SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 300
    with pytest.raises(ConfigurationError):
        parse_duration("forever")


class FrozenClock:
    """Wall-clock time that moves only when the test says, for both the
    verifier's memory (``time.time``) and pyjwt's ``exp`` check (``datetime.now``)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from taskcore.entrypoints.http import auth

        clock = self

        class FrozenDatetime(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> FrozenDatetime:
                return cls.fromtimestamp(clock.now, tz)

        monkeypatch.setattr(auth, "time", self)
        monkeypatch.setattr(jwt.api_jwt, "datetime", FrozenDatetime)


def test_a_verified_token_is_remembered_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    from litestar.exceptions import NotAuthorizedException

    from taskcore.entrypoints.http import auth

    clock = FrozenClock(float(int(time.time())))
    clock.install(monkeypatch)
    verifier = auth.TokenVerifier(key=SECRET, algorithms=("HS256",))
    expires = int(clock.now) + 2
    raw = token(exp=expires)
    decoded = 0
    original = jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal decoded
        decoded += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(auth.jwt, "decode", counting)
    assert verifier.verify(raw).sub == "alice"
    assert verifier.verify(raw).sub == "alice"
    assert decoded == 1  # the signature was checked once
    clock.now = expires - 0.5
    assert verifier.verify(raw).sub == "alice"
    assert decoded == 1  # still served from memory just before its exp
    clock.now = expires
    with pytest.raises(NotAuthorizedException, match="expired"):
        verifier.verify(raw)
    assert decoded == 2  # checked again once it expired, and refused
    with pytest.raises(NotAuthorizedException):
        verifier.verify(raw + "x")  # a forged variant is never served from memory


async def test_queues_are_for_admins_only(client: Client) -> None:
    for method, path in [
        ("GET", "/queues"),
        ("POST", "/queues/default/pause"),
        ("POST", "/queues/default/resume"),
    ]:
        refused = await client.request(method, path, headers=bearer(token()))
        assert refused.status_code == 403, (method, path)
        allowed = await client.request(method, path, headers=bearer(token(scope="tasks:admin")))
        assert allowed.status_code == 200, (method, path, allowed.text)


async def test_bulk_actions_need_write_and_act_on_the_callers_own_tasks_unless_admin(client: Client) -> None:
    alice, bob = bearer(token("alice")), bearer(token("bob"))
    admin = bearer(token("root", scope="tasks:admin"))
    later = {"input_data": "x", "delay_s": 3600}
    mine = [(await client.post("/tasks/", json=later, headers=alice)).json()["id"] for _ in range(2)]
    theirs = [(await client.post("/tasks/", json=later, headers=bob)).json()["id"] for _ in range(3)]
    reader = bearer(token("alice", scope="tasks:read"))
    for path in ("/tasks/cancel", "/tasks/retry"):
        assert (await client.post(path, json={"type": "reverse"}, headers=reader)).status_code == 403
    refused = await client.post("/tasks/cancel", json={"owner": "bob"}, headers=alice)
    assert refused.status_code == 403
    assert "tasks:admin" in refused.json()["detail"]

    own = await client.post("/tasks/cancel", json={"type": "reverse"}, headers=alice)
    assert own.json() == {"matched": 2, "changed": 2, "next_cursor": None}
    assert (await client.post("/tasks/cancel", json={"owner": "alice"}, headers=alice)).json()["matched"] == 0

    async def status(task_id: int) -> str:
        return str((await client.get(f"/tasks/{task_id}", headers=admin)).json()["status"])

    assert [await status(task_id) for task_id in theirs] == ["PENDING"] * 3
    one_owner = await client.post("/tasks/cancel", json={"owner": "bob"}, headers=admin)
    assert one_owner.json()["changed"] == 3
    assert [await status(task_id) for task_id in theirs] == ["CANCELLED"] * 3
    everyone = await client.post("/tasks/retry", json={"status": "CANCELLED"}, headers=admin)
    assert everyone.json()["changed"] == 5
    assert "CANCELLED" not in [await status(task_id) for task_id in mine + theirs]


async def test_the_owner_filter_of_a_listing_is_for_admins_and_a_caller_s_own_sub(client: Client) -> None:
    alice, bob = bearer(token("alice")), bearer(token("bob"))
    admin = bearer(token("root", scope="tasks:admin"))
    later = {"input_data": "x", "delay_s": 3600}
    mine = [(await client.post("/tasks/", json=later, headers=alice)).json()["id"] for _ in range(2)]
    theirs = [(await client.post("/tasks/", json=later, headers=bob)).json()["id"] for _ in range(3)]

    async def listed(owner: str | None, headers: dict[str, str]) -> list[int]:
        params = {} if owner is None else {"owner": owner}
        response = await client.get("/tasks", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [task["id"] for task in response.json()["items"]]

    assert await listed("bob", admin) == theirs[::-1]
    assert await listed("alice", admin) == mine[::-1]
    assert await listed("nobody", admin) == []
    assert await listed(None, admin) == (mine + theirs)[::-1]
    assert await listed("alice", alice) == mine[::-1]  # one's own: as without the filter
    refused = await client.get("/tasks", params={"owner": "bob"}, headers=alice)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == PROBLEM
    assert "tasks:admin" in refused.json()["detail"]
    assert (await client.get("/tasks", params={"owner": ""}, headers=admin)).status_code == 422
