"""compose.yaml runs the whole stack: checked without a Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (v1) not installed")
def test_compose_file_validates() -> None:
    env = {**os.environ, "TASKCORE_JWT_SECRET": "only-for-validation"}
    subprocess.run(["docker-compose", "-f", "compose.yaml", "config", "-q"], cwd=ROOT, check=True, env=env)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (v1) not installed")
def test_compose_refuses_to_run_without_a_jwt_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TASKCORE_JWT_SECRET"}
    result = subprocess.run(
        ["docker-compose", "-f", "compose.yaml", "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0
    assert b"TASKCORE_JWT_SECRET" in result.stderr


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "rabbitmq", "migrate", "api", "worker"}
    for name, service in services.items():
        if name != "migrate":
            assert "healthcheck" in service, name


def test_the_app_waits_for_healthy_services_and_the_migration(compose: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        depends = compose["services"][name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        for service in ("postgres", "redis", "rabbitmq"):
            assert depends[service]["condition"] == "service_healthy"


def test_workers_can_scale(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert compose["services"]["api"]["ports"] == ["8005:8005"]
    assert compose["services"]["rabbitmq"]["image"].endswith("management-alpine")


def test_the_image_runs_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") == 2
    assert "\nUSER taskcore\n" in dockerfile
