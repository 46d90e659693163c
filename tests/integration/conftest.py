"""Real services for the integration suite.

Each service comes from ``TASKCORE_TEST_<SERVICE>_URL`` when set (CI points
them at this machine's services) and from testcontainers otherwise. Every run
gets its own ``run_id`` so databases, queues and key prefixes never collide
with another run on the same servers. With ``TASKCORE_TEST_REQUIRE_SERVICES=1``
a missing service fails the run instead of skipping it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.requirements import unavailable

pytestmark = pytest.mark.integration


def _unavailable(what: str, exc: BaseException) -> None:
    unavailable(f"{what} unavailable: set TASKCORE_TEST_{what.upper()}_URL or run Docker ({exc})")


@pytest.fixture(scope="session")
def containers() -> Iterator[ExitStack]:
    with ExitStack() as opened:
        yield opened


def _from_env_or_container(name: str, containers: ExitStack, start: Any) -> str:
    url = os.environ.get(f"TASKCORE_TEST_{name.upper()}_URL")
    if url:
        return url
    try:
        return str(start(containers))
    except Exception as exc:
        _unavailable(name, exc)
        raise


@pytest.fixture(scope="session")
def run_id() -> str:
    """A name fragment unique to this test run: lowercase, safe in SQL and AMQP names."""
    return f"tc{os.getpid()}{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def database_server_url(containers: ExitStack) -> str:
    """A PostgreSQL URL whose user may CREATE DATABASE."""

    def start(opened: ExitStack) -> str:
        from testcontainers.community.postgres import PostgresContainer

        pg = opened.enter_context(PostgresContainer("postgres:16-alpine", driver=None))
        return str(pg.get_connection_url())

    return _from_env_or_container("database", containers, start)


@pytest.fixture(scope="session")
def redis_server_url(containers: ExitStack) -> str:
    def start(opened: ExitStack) -> str:
        from testcontainers.community.redis import RedisContainer

        redis = opened.enter_context(RedisContainer("redis:7-alpine"))
        return f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"

    return _from_env_or_container("redis", containers, start)


@pytest.fixture(scope="session")
def amqp_server_url(containers: ExitStack) -> str:
    def start(opened: ExitStack) -> str:
        from testcontainers.community.rabbitmq import RabbitMqContainer

        rabbit = opened.enter_context(RabbitMqContainer("rabbitmq:3.13-management-alpine"))
        host, port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
        return f"amqp://guest:guest@{host}:{port}/"

    return _from_env_or_container("amqp", containers, start)


# Shared by several folders: the three-node Redis Cluster.
# Shared by several folders: one migrated template, a database copy per test.
from tests.integration.databases import database_supply, databases, template_database  # noqa: E402, F401
from tests.integration.e2e.conftest import stack  # noqa: E402, F401
from tests.integration.redis_servers import redis_cluster  # noqa: E402, F401
