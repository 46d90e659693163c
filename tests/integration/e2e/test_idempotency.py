"""Idempotency-Key against PostgreSQL: the database makes a race create one task."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import Stack

pytestmark = pytest.mark.integration


def test_twenty_concurrent_posts_with_one_key_make_one_task(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker()

    def post(_: int) -> httpx.Response:
        return httpx.post(
            f"{stack.base_url}/tasks/",
            json={"input_data": "once"},
            headers={"Idempotency-Key": "race-1"},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(post, range(20)))
    assert {r.status_code for r in responses} == {201}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    assert stack.sql("SELECT count(*) FROM tasks") == [(1,)]
    assert stack.wait_final(ids.pop())["result"] == "ecno"
    different = httpx.post(
        f"{stack.base_url}/tasks/", json={"input_data": "other"}, headers={"Idempotency-Key": "race-1"}
    )
    assert different.status_code == 422
    assert stack.sql("SELECT count(*) FROM tasks") == [(1,)]
