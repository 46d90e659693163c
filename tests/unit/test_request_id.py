"""``X-Request-ID``: kept or made up, on every response, and on the log records
written while the request is served."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import cast

import jwt
import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.params import FromQuery, JSONBody
from litestar.types import Scope

from taskcore.entrypoints.http.auth import TokenVerifier, jwt_middleware
from taskcore.entrypoints.http.problems import EXCEPTION_HANDLERS
from taskcore.entrypoints.http.rate_limit import rate_limit_middleware
from taskcore.entrypoints.http.request_id import (
    RequestIdFilter,
    RequestIdPlugin,
    current_request_id,
    request_id_of,
)

from .test_http import Client, loop_time, serving

SECRET = "a-test-secret-that-is-long-enough-for-hs256!"
PROBLEM = "application/problem+json"
GENERATED = re.compile(r"[0-9a-f]{32}")  # uuid4().hex


def bearer(sub: str) -> dict[str, str]:
    """Some are minted in a parametrize list, at import: a full ``make test``
    reaches these tests after the integration suite, past a short expiry."""
    claims = {"sub": sub, "exp": int(time.time()) + 30 * 86_400}
    return {"authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


VERIFIER = TokenVerifier(key=SECRET, algorithms=("HS256",))

log = logging.getLogger("taskcore.test.request_id")


class Echo(msgspec.Struct):
    text: str


@get("/probe")
async def probe() -> dict[str, str | None]:
    log.warning("serving the probe")
    return {"request_id": current_request_id()}


@get("/probe/sync", sync_to_thread=True)
def probe_sync() -> dict[str, str | None]:
    """Run in a worker thread: the id must follow the request there too."""
    log.warning("serving the probe in a thread")
    return {"request_id": current_request_id()}


@get("/slow")
async def slow(delay: FromQuery[float]) -> dict[str, str | None]:
    await asyncio.sleep(delay)
    return {"request_id": current_request_id()}


@get("/boom")
async def boom() -> None:
    raise RuntimeError("handler bug")


@post("/echo")
async def echo(data: JSONBody[Echo]) -> Echo:
    return data


@post("/tasks", status_code=201)
async def submit() -> None:
    """Stands in for the submit route, to get a 429 from the rate limit."""


@get("/secured/secret", middleware=[jwt_middleware(VERIFIER, exclude=["^/docs"])])
async def secret() -> str:
    return "s"


def make_app() -> Litestar:
    """The pieces ``create_app`` has: problem handlers, a body limit, the auth
    middleware (here on one route), the rate limit, and the plugin."""
    return Litestar(
        route_handlers=[probe, probe_sync, slow, boom, echo, submit, secret],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=100,
        middleware=[rate_limit_middleware(1)],
        plugins=[RequestIdPlugin()],
        debug=False,
    )


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with serving(make_app()) as client:
        yield client


class Collector(logging.Handler):
    """Keeps what it is given, stamped by the filter as a production handler would be."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    collector = Collector()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield collector.records
    finally:
        root.removeHandler(collector)


@pytest.mark.parametrize(
    "given", ["abc", "A-b_c.9", "x" * 128, "0f8fad5b-d9cb-469f-a165-70867728950e", "1", "..."]
)
async def test_a_sane_id_from_the_caller_is_kept(client: Client, given: str) -> None:
    response = await client.get("/probe", headers={"x-request-id": given})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == given
    assert response.json() == {"request_id": given}


async def test_without_an_id_one_is_generated_per_request(client: Client) -> None:
    first, second = await client.get("/probe"), await client.get("/probe")
    for response in (first, second):
        assert GENERATED.fullmatch(response.headers["x-request-id"])
        assert response.json() == {"request_id": response.headers["x-request-id"]}
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize(
    "given",
    [b"", b"x" * 129, b"has space", b"a/b", b"semi;colon", b"<script>", b"\xc3\xbc", b"id,other"],
)
async def test_an_insane_id_is_ignored_and_replaced(client: Client, given: bytes) -> None:
    response = await client.get("/probe", headers={b"x-request-id": given})
    returned = response.headers["x-request-id"]
    assert GENERATED.fullmatch(returned)
    assert response.json() == {"request_id": returned}


def test_only_the_first_of_several_id_headers_counts() -> None:
    """A server passes repeated headers one by one (the test client joins them
    with a comma, which is not a sane id)."""
    first = [(b"x-request-id", b"first"), (b"x-request-id", b"second")]
    assert request_id_of(cast(Scope, {"type": "http", "headers": first, "state": {}})) == "first"
    bad_first = [(b"x-request-id", b"no good"), (b"x-request-id", b"second")]
    assert GENERATED.fullmatch(request_id_of(cast(Scope, {"type": "http", "headers": bad_first})))


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("GET", "/probe", None, {}, 200),
        ("POST", "/echo", b'{"text": "hi"}', JSON, 201),
        ("GET", "/secured/secret", None, bearer("alice"), 200),
        ("POST", "/echo", b"{nope", JSON, 400),
        ("GET", "/secured/secret", None, {}, 401),  # raised by a middleware, rendered outside it
        ("GET", "/nowhere", None, {}, 404),  # fails in routing: no route middleware runs
        ("DELETE", "/probe", None, {}, 405),
        ("POST", "/echo", b'{"text": "' + b"x" * 200 + b'"}', JSON, 413),
        ("POST", "/echo", b'{"text": 5}', JSON, 422),
        ("GET", "/slow?delay=soon", None, {}, 422),
        ("GET", "/boom", None, {}, 500),
    ],
)
async def test_every_response_carries_the_id(
    client: Client, method: str, path: str, body: bytes | None, headers: dict[str, str], status: int
) -> None:
    given = await client.request(method, path, content=body, headers={**headers, "x-request-id": "trace-1"})
    assert given.status_code == status, given.text
    assert given.headers["x-request-id"] == "trace-1"
    if status >= 400:
        assert given.headers["content-type"] == PROBLEM
    generated = await client.request(method, path, content=body, headers=headers)
    assert generated.status_code == status
    assert GENERATED.fullmatch(generated.headers["x-request-id"])


async def test_a_429_from_the_rate_limit_carries_it_too(client: Client) -> None:
    assert (await client.post("/tasks", headers={"x-request-id": "r1"})).status_code == 201
    limited = await client.post("/tasks", headers={"x-request-id": "r2"})
    assert (limited.status_code, limited.headers["x-request-id"]) == (429, "r2")
    assert limited.headers["content-type"] == PROBLEM


async def test_log_records_during_the_request_carry_its_id(
    client: Client, records: list[logging.LogRecord]
) -> None:
    await client.get("/probe", headers={"x-request-id": "from-async"})
    await client.get("/probe/sync", headers={"x-request-id": "from-thread"})
    log.warning("between requests")
    stamped = {r.getMessage(): getattr(r, "request_id", None) for r in records if r.name == log.name}
    assert stamped == {
        "serving the probe": "from-async",
        "serving the probe in a thread": "from-thread",
        "between requests": "-",
    }
    assert current_request_id() is None


async def test_the_500_log_line_names_the_request(client: Client, records: list[logging.LogRecord]) -> None:
    response = await client.get("/boom")
    (error,) = [r for r in records if r.name == "taskcore.http" and r.levelno == logging.ERROR]
    assert error.request_id == response.headers["x-request-id"]  # type: ignore[attr-defined]
    assert error.exc_info is not None


@pytest.mark.looptime
async def test_concurrent_requests_keep_their_own_ids() -> None:
    async with serving(make_app()) as client:
        started = loop_time()
        responses = await asyncio.gather(
            *(
                client.get("/slow", params={"delay": delay}, headers={"x-request-id": f"req-{i}"})
                for i, delay in enumerate([0.05, 0.01, 0.03])
            )
        )
        took = loop_time() - started
    assert took == pytest.approx(0.05, abs=1e-3)  # they ran at the same time, finishing out of order
    assert [r.json()["request_id"] for r in responses] == ["req-0", "req-1", "req-2"]


def test_the_filter_formats_outside_a_request() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    handler.addFilter(RequestIdFilter())
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert handler.filter(record)
    assert handler.format(record) == "- hello"
