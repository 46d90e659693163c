"""Authentication and ownership against the real stack (PostgreSQL rows, Redis cache)."""

from __future__ import annotations

import subprocess
import time

import httpx
import jwt
import pytest

from .conftest import TASKCORE, Stack

pytestmark = pytest.mark.integration

SECRET = "an-integration-secret-that-is-long-enough!"


def bearer(sub: str, scope: str = "tasks:read tasks:write") -> dict[str, str]:
    claims = {"sub": sub, "scope": scope, "exp": int(time.time()) + 600}
    return {"authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def test_owners_never_see_each_others_tasks(stack: Stack) -> None:
    auth = {"TASKCORE_AUTH": "jwt", "TASKCORE_JWT_SECRET": SECRET}
    stack.start_api(**auth)
    stack.start_worker(**auth)
    base = stack.base_url
    alice, bob = bearer("alice"), bearer("bob")
    assert httpx.post(f"{base}/tasks/", json={"input_data": "x"}).status_code == 401
    task_id = httpx.post(f"{base}/tasks/", json={"input_data": "abc"}, headers=alice).json()["id"]
    deadline = time.monotonic() + 20
    while (task := httpx.get(f"{base}/tasks/{task_id}", headers=alice).json())["status"] != "COMPLETED":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert task["result"] == "cba"
    assert stack.sql("SELECT owner FROM tasks WHERE id = %s", task_id) == [("alice",)]
    # served from the cache and from the database alike: bob gets 404
    assert httpx.get(f"{base}/tasks/{task_id}", headers=bob).status_code == 404
    assert httpx.post(f"{base}/tasks/{task_id}/retry", headers=bob).status_code == 404
    assert httpx.get(f"{base}/tasks/{task_id}/events", headers=bob).status_code == 404
    assert httpx.get(f"{base}/tasks/{task_id}", params={"wait": 1}, headers=bob).status_code == 404
    assert httpx.post(f"{base}/tasks/{task_id}/cancel", headers=bob).status_code == 404
    listed = httpx.get(f"{base}/tasks", params={"status": "COMPLETED"}, headers=bob).json()
    assert listed["items"] == []
    mine = httpx.get(f"{base}/tasks", params={"status": "COMPLETED"}, headers=alice).json()
    assert [t["id"] for t in mine["items"]] == [task_id]


def test_the_api_refuses_to_start_with_jwt_but_no_key(stack: Stack) -> None:
    env = {**stack.env, "TASKCORE_AUTH": ""}
    env.pop("TASKCORE_AUTH")
    result = subprocess.run(
        [TASKCORE, "api", "--port", "1"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 1
    assert "TASKCORE_JWT_SECRET or TASKCORE_JWT_PUBLIC_KEY_FILE" in result.stderr


def test_verify_with_a_minted_token(stack: Stack) -> None:
    auth = {"TASKCORE_AUTH": "jwt", "TASKCORE_JWT_SECRET": SECRET}
    stack.start_api(**auth)
    stack.start_worker(**auth)
    env = {**stack.env, **auth}
    minted = subprocess.run(
        [TASKCORE, "token", "--sub", "ops", "--ttl", "5m"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    denied = subprocess.run([TASKCORE, "verify", stack.base_url], env=env, capture_output=True, text=True)
    assert denied.returncode != 0
    assert "401" in denied.stderr
    result = subprocess.run(
        [TASKCORE, "verify", stack.base_url, "--token", minted], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
