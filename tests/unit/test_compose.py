"""compose.yaml runs the whole stack: checked without a Docker engine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.requirements import require_tool

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


# Debian's docker-compose (v1) reads and checks compose.yaml without a Docker engine.
INSTALL_COMPOSE = "install docker-compose (v1), e.g. `apt-get install -y docker-compose` as .ci/run does"


def test_compose_file_validates() -> None:
    docker_compose = require_tool("docker-compose", INSTALL_COMPOSE)
    env = {**os.environ, "TASKCORE_JWT_SECRET": "only-for-validation"}
    subprocess.run([docker_compose, "-f", "compose.yaml", "config", "-q"], cwd=ROOT, check=True, env=env)


def test_compose_refuses_to_run_without_a_jwt_secret() -> None:
    docker_compose = require_tool("docker-compose", INSTALL_COMPOSE)
    env = {k: v for k, v in os.environ.items() if k != "TASKCORE_JWT_SECRET"}
    result = subprocess.run(
        [docker_compose, "-f", "compose.yaml", "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0
    assert b"TASKCORE_JWT_SECRET" in result.stderr


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "postgres", "redis", "rabbitmq", "migrate", "api", "worker", "prometheus", "grafana",
        "rabbit1", "rabbit2", "rabbit3",
    }  # fmt: skip
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


def test_monitoring_is_a_profile_of_its_own(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    for name in ("postgres", "redis", "rabbitmq", "migrate", "api", "worker"):
        assert "profiles" not in services[name]  # `docker compose up` starts them as before
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        assert (ROOT / mount.split(":")[0]).exists(), mount


def test_the_ha_profile_is_a_three_node_rabbitmq_cluster(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nodes = ["rabbit1", "rabbit2", "rabbit3"]
    cookies = set()
    for name in nodes:
        node = services[name]
        assert node["profiles"] == ["ha"]
        assert node["hostname"] == name
        assert node["image"] == services["rabbitmq"]["image"]
        cookies.add(node["environment"]["RABBITMQ_ERLANG_COOKIE"])
        assert "./deploy/rabbitmq/ha.conf:/etc/rabbitmq/conf.d/20-ha.conf:ro" in node["volumes"]
    assert len(cookies) == 1
    config = (ROOT / "deploy/rabbitmq/ha.conf").read_text()
    assert "cluster_formation.peer_discovery_backend = classic_config" in config
    for n, name in enumerate(nodes, 1):
        assert f"cluster_formation.classic_config.nodes.{n} = rabbit@{name}" in config
    # deploy/rabbitmq/ha.env points the API and the workers at all three, with quorum queues
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy/rabbitmq/ha.env").read_text().splitlines()
        if "=" in line
    )
    assert [url.split("@")[1] for url in env["TASKCORE_AMQP_URL"].split(",")] == [f"{n}:5672/" for n in nodes]
    assert env["TASKCORE_AMQP_QUEUE_TYPE"] == "quorum"
    app_env = services["api"]["environment"]
    assert app_env["TASKCORE_AMQP_URL"] == "${TASKCORE_AMQP_URL:-amqp://taskcore:taskcore@rabbitmq:5672/}"
    assert app_env["TASKCORE_AMQP_QUEUE_TYPE"] == "${TASKCORE_AMQP_QUEUE_TYPE:-classic}"


def test_the_ha_profile_validates() -> None:
    docker_compose = require_tool("docker-compose", INSTALL_COMPOSE)
    env = {**os.environ, "TASKCORE_JWT_SECRET": "only-for-validation"}
    command = [
        docker_compose,
        "-f",
        "compose.yaml",
        "--profile",
        "ha",
        "--env-file",
        "deploy/rabbitmq/ha.env",
    ]
    rendered = subprocess.run(
        [*command, "config"], cwd=ROOT, check=True, env=env, capture_output=True, text=True
    )
    assert "rabbit1:5672/,amqp://taskcore:taskcore@rabbit2:5672/" in rendered.stdout


def test_prometheus_scrapes_the_api_and_every_worker_replica() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["taskcore-api"]["static_configs"][0]["targets"] == ["api:8005"]
    worker = jobs["taskcore-worker"]["dns_sd_configs"][0]
    assert (worker["names"], worker["port"]) == (["worker"], 9100)


def test_the_grafana_dashboard_asks_only_for_metrics_taskcore_exports() -> None:
    import json
    import re

    from prometheus_client import CollectorRegistry

    from taskcore.adapters.prometheus.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    families = {metric.name for metric in registry.collect()}
    exported = {name + suffix for name in families for suffix in ("", "_total", "_bucket", "_count", "_sum")}
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/taskcore.json").read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"taskcore_[a-z_]+", target["expr"])
    }
    http = {name for name in asked if name.startswith("taskcore_http_")}  # Litestar's plugin, in the API
    assert asked - http <= exported, sorted(asked - http - exported)
    assert len(asked - http) >= 10
    assert {"taskcore_http_requests_total", "taskcore_http_request_duration_seconds_bucket"} == http
    # the depths in all and, on a panel of its own, by queue (each process reports the same reading)
    expressions = {target["expr"] for panel in dashboard["panels"] for target in panel["targets"]}
    assert "max by (queue) (taskcore_queue_depth_messages)" in expressions
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
