"""What a test needs from the machine, and what happens when it is missing.

Without ``TASKCORE_TEST_REQUIRE_SERVICES=1`` a test whose service or tool is
missing is skipped, so a laptop without RabbitMQ's CLI can still run the rest.
With it (CI, ``.ci/run``) the test fails instead: nothing CI is meant to cover
may pass as a skip.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """Skip the running test for ``message``; fail it when ``TASKCORE_TEST_REQUIRE_SERVICES=1``."""
    __tracebackhide__ = True  # pytest reports the test's line, not this one
    if os.environ.get("TASKCORE_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} [TASKCORE_TEST_REQUIRE_SERVICES=1: a missing requirement fails the test]")
    pytest.skip(message)


def require_tool(command: str, install: str) -> str:
    """The path of ``command``; when it is not on PATH, ``unavailable`` with how to ``install`` it."""
    __tracebackhide__ = True
    path = shutil.which(command)
    if path is None:
        unavailable(f"{command} not found on PATH: {install}")
    return path
