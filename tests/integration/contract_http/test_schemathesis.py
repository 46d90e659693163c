"""Schemathesis against a real ``taskcore api`` and worker, driven by the live schema.

The API's own ``/docs/openapi.json`` is the contract. Schemathesis runs every
phase over every operation (schema examples, coverage of boundary and invalid
values, property-based fuzzing, and stateful sequences that follow the links it
infers, e.g. submit then read, cancel or retry the new task) with positive and
negative data, and applies every check: no 5xx, status code, content type,
headers and body as documented, schema-invalid requests rejected, schema-valid
ones accepted, ``Allow`` on OPTIONS/405, and the auth checks once the schema
declares security. Generation is deterministic (Hypothesis ``derandomize``, no
example database), so CI runs the same cases every time. It runs twice: with
authentication off, and on with a token holding every scope (``conftest.py``).

Set ``TASKCORE_SCHEMATHESIS_REPORT_DIR`` to keep the JUnit and JSON reports
(e.g. as a CI artifact; one subdirectory per run); otherwise they go to the
test's tmp directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.e2e.conftest import Stack

pytestmark = pytest.mark.integration

SCHEMA_PATH = "/docs/openapi.json"
MAX_EXAMPLES = 25  # per operation and phase; ~600 requests per run, ~10 s here
RUN_TIMEOUT_S = 100
REPORT_DIR_ENV = "TASKCORE_SCHEMATHESIS_REPORT_DIR"
HEADER_ENV_PREFIX = "TASKCORE_SCHEMATHESIS_HEADER_"
HOOKS = Path(__file__).with_name("hooks.py")
SECURITY_SCHEME = "BearerToken"  # as create_app declares it

# Operations whose schema-valid requests may rightly get a 422, and why. Keep
# this list short: every entry hides real "valid request rejected" bugs there.
ACCEPTS_422_FOR_VALID_DATA = {
    "GET /tasks": "cursor is opaque: any string <= 200 chars is schema-valid, only issued ones are accepted;"
    " a tag is 1 to 64 of letters, digits and -_.:/= (the query's schema does not say so)",
    "POST /tasks": "after names tasks by id: a schema-valid id that names no task of the caller's is a 422;"
    " a callback_url needs TASKCORE_WEBHOOK_SECRET and an http(s) URL with a public host;"
    " metadata is at most 4 KiB of JSON",
    "POST /tasks/batch": "each item as POST /tasks (after, callback_url, metadata)",
    "POST /workflows": "steps form a graph: acyclic, after names steps of the same body (no schema says so);"
    " a step's tags with the workflow's are at most 16, its metadata with the workflow's at most 4 KiB",
    "POST /webhooks": "url must be http(s) with a public host (SSRF guard); a secret is 16 bytes or more",
    "POST /schedules": "exactly one of cron and every_s; cron is parsed, timezone is an IANA zone, type a"
    " registered handler and input_data its input (no schema says so)",
    "POST /tasks/cancel": "cursor is opaque as for GET /tasks; a body without any filter is refused",
    "POST /tasks/retry": "cursor is opaque as for GET /tasks; a body without any filter is refused",
}
# schemathesis' default for positive_data_acceptance, plus 422.
POSITIVE_DATA_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]


class ContractFailures(AssertionError):
    """Schemathesis completed its run and found responses that break the contract."""


@dataclass
class Run:
    report: dict[str, Any]
    output: str
    returncode: int
    wall_s: float


def schemathesis_config(path: Path, headers: Mapping[str, str]) -> dict[str, str]:
    """Write the config file; header values travel in the environment, never in argv or on disk.

    A bearer ``Authorization`` header becomes the credentials of the schema's
    security scheme rather than a header on every request: schemathesis then
    also sends requests without it (and expects 401), which a header it must
    always send would silently defeat.
    """
    env: dict[str, str] = {}
    entries = []
    auth: list[str] = []
    for index, (name, value) in enumerate(headers.items()):
        variable = f"{HEADER_ENV_PREFIX}{index}"
        reference = json.dumps("${" + variable + "}")
        if name.lower() == "authorization" and value.startswith("Bearer "):
            env[variable] = value.removeprefix("Bearer ")
            auth = [f"[auth.openapi.{SECURITY_SCHEME}]", f"bearer = {reference}"]
        else:
            env[variable] = value
            entries.append(f"{json.dumps(name)} = {reference}")
    lines = ["# written by tests/integration/contract_http", f"hooks = {json.dumps(str(HOOKS))}"]
    if entries:
        lines.append(f"headers = {{ {', '.join(entries)} }}")
    lines += auth
    for operation, reason in ACCEPTS_422_FOR_VALID_DATA.items():
        lines += [
            f"# {reason}",
            "[[operations]]",
            f"include-name = {json.dumps(operation)}",
            f"checks.positive_data_acceptance.expected-statuses = {json.dumps(POSITIVE_DATA_STATUSES)}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return env


def run_schemathesis(base_url: str, headers: Mapping[str, str], workdir: Path, report_dir: Path) -> Run:
    config = workdir / "schemathesis.toml"
    header_env = schemathesis_config(config, headers)
    json_report = report_dir / "schemathesis.json"
    json_report.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{base_url}{SCHEMA_PATH}",
        "--checks",
        "all",
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--continue-on-failure",
        "--request-timeout",
        "10",
        "--no-color",
        "--report",
        "json,junit",
        "--report-dir",
        str(report_dir),
        "--report-json-path",
        str(json_report),
        "--report-junit-path",
        str(report_dir / "schemathesis-junit.xml"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEMATHESIS_", HEADER_ENV_PREFIX))}
    env.update(header_env, COLUMNS="120")
    started = time.monotonic()
    completed = subprocess.run(
        command,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    wall_s = time.monotonic() - started
    output = completed.stdout + completed.stderr
    assert json_report.exists(), f"schemathesis wrote no report (exit {completed.returncode}):\n{output}"
    report: dict[str, Any] = json.loads(json_report.read_text())
    return Run(report=report, output=output, returncode=completed.returncode, wall_s=wall_s)


def summary(run: Run) -> str:
    report = run.report
    operations, cases = report["operations"], report["test_cases"]
    phases = ", ".join(f"{name} {phase['status']}" for name, phase in report["phases"].items())
    lines = [
        f"schemathesis {report['schemathesis_version']}: {operations['tested']}/{operations['total']} "
        f"operations, {cases['generated']} test cases (max {MAX_EXAMPLES} per operation and phase), "
        f"{cases['unique_failures']} unique failures, {len(report['errors'])} errors, "
        f"{run.wall_s:.1f} s wall",
        f"  phases: {phases}",
    ]
    lines += [
        f"  {failure['code']} {failure['title']} x{failure['count']}: {', '.join(failure['operations'])}"
        for failure in report["failures"]
    ]
    return "\n".join(lines)


def failure_details(output: str, limit: int = 20_000) -> str:
    """The CLI's FAILURES section (each with a curl line to reproduce), long lines cut."""
    start = output.find(" FAILURES ")
    section = output[output.rfind("\n", 0, start) + 1 :] if start >= 0 else output
    lines = [line if len(line) <= 300 else line[:300] + " ..." for line in section.splitlines()]
    text = "\n".join(line for line in lines if line.strip())
    return text if len(text) <= limit else text[:limit] + "\n... (truncated)"


def wait_ready(base_url: str, headers: Mapping[str, str], timeout: float = 15) -> None:
    """Undocumented 503s while a dependency connects would be reported as failures."""
    deadline = time.monotonic() + timeout
    url = f"{base_url}/health/ready"
    while (response := httpx.get(url, headers=dict(headers), timeout=5)).status_code != 200:
        assert time.monotonic() < deadline, f"API not ready: {response.status_code} {response.text}"
        time.sleep(0.2)


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_api_honours_its_openapi_schema(
    stack: Stack, auth: bool, service_env: dict[str, str], auth_headers: dict[str, str], tmp_path: Path
) -> None:
    api = stack.start_api(**service_env)
    stack.start_worker(**service_env)
    wait_ready(stack.base_url, auth_headers)
    report_dir = Path(os.environ.get(REPORT_DIR_ENV) or tmp_path / "reports") / (
        "auth-jwt" if auth else "auth-off"
    )
    report_dir.mkdir(parents=True, exist_ok=True)

    run = run_schemathesis(stack.base_url, auth_headers, tmp_path, report_dir)

    text = summary(run)
    print(text)
    report = run.report
    # A run that could not test (schema not loaded, operations erroring or
    # skipped, every request refused for auth) is broken, not a contract finding.
    operations = report["operations"]
    assert report["complete"], f"{text}\n{run.output}"
    assert not report["errors"], f"{text}\n{run.output}"
    assert operations["tested"] == operations["total"] > 0, f"{text}\n{run.output}"
    assert not report.get("warnings", {}).get("missing_auth"), f"{text}\n{run.output}"

    if report["failures"]:
        details = failure_details(run.output)
        if any(failure["code"] == "ST101" for failure in report["failures"]):
            details += f"\n\nAPI log (tail):\n{api.output()[-6000:]}"
        raise ContractFailures(f"{text}\n\n{details}")
    assert run.returncode == 0, f"{text}\n{run.output}"
