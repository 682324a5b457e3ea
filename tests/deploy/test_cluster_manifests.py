"""The cluster manifests (deploy/helm/streamreco) and docker-compose.yml, checked without a cluster,
Docker or network: `helm lint`, `helm template` of the default values and the gpu and hpa variants,
kubeconform -strict of every rendered object against the Kubernetes API's schemas and those of the
custom resources (Strimzi, KEDA, prometheus-operator), the chart's copies of the Grafana dashboards
against deploy/grafana/dashboards, and docker-compose.yml against the Compose Specification.

The tools and schemas come from deploy/setup_k8s_tools.sh (run by `make setup`), which records
where they are in .stack/k8s-tools.env. Without them these tests skip, except under CI, where they
fail.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "streamreco"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

VARIANTS: dict[str, list[str]] = {
    "default": [],
    "gpu": ["--set", "gpu.enabled=true"],
    "hpa": ["--set", "autoscaling.mode=hpa"],
}
# RECO_* names the manifests set for settings the worker does not have yet: the address its
# metrics and web servers bind to (loopback now, which probes and Prometheus cannot reach) and the
# Redis password (for Feast's connection string). Drop a name here once contract/settings.py has it.
SETTINGS_NAMES = {f"RECO_{name.upper()}" for name in Settings.model_fields}
TIMEOUT_S = 60


# --- tools ----------------------------------------------------------------------------------------

def _tools() -> dict[str, str]:
    env_file = get_settings().stack_dir / "k8s-tools.env"
    problem = None
    tools: dict[str, str] = {}
    if not env_file.exists():
        problem = f"{env_file} missing"
    else:
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                tools[key] = value
        for key in ("HELM", "KUBECONFORM", "CHECK_JSONSCHEMA"):
            if not os.access(tools.get(key, ""), os.X_OK):
                problem = f"{key} ({tools.get(key)}) is not an executable"
        if not Path(tools.get("K8S_SCHEMAS", "")).is_dir():
            problem = f"no schema folder {tools.get('K8S_SCHEMAS')}"
    if problem:
        message = f"cluster-manifest tools not installed: {problem}; run `bash deploy/setup_k8s_tools.sh` (make setup)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return tools


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    return _tools()


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT, **kwargs)


def _kube_versions(tools: dict[str, str]) -> list[str]:
    return tools["KUBE_VERSIONS"].split()


def _template(tools: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    newest = _kube_versions(tools)[-1]
    return _run([tools["HELM"], "template", "reco", str(CHART), "--namespace", "reco", "--kube-version", newest,
                 *args])


@pytest.fixture(scope="module")
def rendered(tools: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, args in VARIANTS.items():
        result = _template(tools, *args)
        assert result.returncode == 0, f"helm template ({name}) failed:\n{result.stderr}"
        out[name] = result.stdout
    return out


def _objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def _one(objs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [o for o in _by_kind(objs, kind) if o["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"expected one {kind} of {component}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def _container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


# --- helm and kubeconform --------------------------------------------------------------------------

@pytest.mark.parametrize("variant", list(VARIANTS))
def test_helm_lint(tools: dict[str, str], variant: str) -> None:
    for kube in _kube_versions(tools):
        result = _run([tools["HELM"], "lint", "--strict", "--kube-version", kube, str(CHART), *VARIANTS[variant]])
        assert result.returncode == 0, f"helm lint ({variant}, Kubernetes {kube}):\n{result.stdout}{result.stderr}"


def _kubeconform(tools: dict[str, str], kube: str, manifests: str) -> subprocess.CompletedProcess[str]:
    schemas = tools["K8S_SCHEMAS"]
    kubernetes = "/kubernetes/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/"
    kubernetes += "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    crds = "/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
    return _run([tools["KUBECONFORM"], "-strict", "-summary", "-output", "text", "-kubernetes-version", kube,
                 "-schema-location", schemas + kubernetes, "-schema-location", schemas + crds, "-"],
                input=manifests)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_kubeconform_strict(tools: dict[str, str], rendered: dict[str, str], variant: str) -> None:
    """Every object, custom resources included, against its schema; an object without one fails."""
    for kube in _kube_versions(tools):
        result = _kubeconform(tools, kube, rendered[variant])
        assert result.returncode == 0, f"kubeconform ({variant}, Kubernetes {kube}):\n{result.stdout}{result.stderr}"
        assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout


def test_kubeconform_catches_a_misspelt_custom_resource_field(tools: dict[str, str], rendered: dict[str, str]) -> None:
    """The CRD schemas are strict too (a typo in a Strimzi or KEDA resource is not waved through)."""
    bad = rendered["default"].replace("  minReplicaCount:", "  minReplicaCnt:", 1)
    bad = bad.replace("  topicName:", "  topicNmae:", 1)
    assert bad != rendered["default"]
    result = _kubeconform(tools, _kube_versions(tools)[-1], bad)
    assert result.returncode != 0
    assert "minReplicaCnt" in result.stdout and "topicNmae" in result.stdout, result.stdout


def test_chart_objects(rendered: dict[str, str]) -> None:
    objs = _objects(rendered["default"])
    kinds = sorted(o["kind"] for o in objs)
    for kind, count in {"Deployment": 3, "Kafka": 1, "KafkaNodePool": 1, "KafkaTopic": 6, "ScaledObject": 1,
                        "PodMonitor": 2, "Secret": 2, "Service": 2}.items():
        assert kinds.count(kind) == count, f"{kind}: {kinds.count(kind)} (all: {kinds})"
    assert not _by_kind(objs, "HorizontalPodAutoscaler")


# --- what the objects say ----------------------------------------------------------------------------

def _worker_env(objs: list[dict[str, Any]]) -> dict[str, str]:
    return _one(objs, "ConfigMap", "worker")["data"]


def test_worker_settings_are_the_workers(rendered: dict[str, str]) -> None:
    """Every RECO_* the chart sets is a field of contract/settings.py (or a pending one)."""
    objs = _objects(rendered["default"])
    env = _worker_env(objs)
    worker = _container(_one(objs, "Deployment", "worker"), "worker")
    names = set(env) | {e["name"] for e in worker.get("env", [])}
    unknown = names - SETTINGS_NAMES
    assert not unknown, f"not settings of contract/settings.py: {sorted(unknown)}"
    defaults = Settings()
    assert env["RECO_EVENTS_TOPIC"] == defaults.events_topic
    assert env["RECO_RECOMMENDATIONS_TOPIC"] == defaults.recommendations_topic
    assert env["RECO_DLQ_TOPIC"] == defaults.dlq_topic
    assert env["RECO_CONSUMER_GROUP"] == defaults.consumer_group
    assert env["RECO_ONLINE_STORE"] == "redis"
    assert env["RECO_BOOTSTRAP_SERVERS"] == "reco-streamreco-kafka-kafka-bootstrap:9092"
    # Several workers at once: each its own static member id.
    instance = next(e for e in worker["env"] if e["name"] == "RECO_WORKER_INSTANCE_ID")
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_worker_probes_and_resources(rendered: dict[str, str]) -> None:
    objs = _objects(rendered["default"])
    worker = _container(_one(objs, "Deployment", "worker"), "worker")
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports == {"metrics": get_settings().metrics_port, "web": get_settings().worker_web_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe
    assert worker["resources"]["requests"] and worker["resources"]["limits"]
    assert int(_worker_env(objs)["RECO_METRICS_PORT"]) == ports["metrics"]


def test_keda_scales_on_the_events_lag(rendered: dict[str, str]) -> None:
    objs = _objects(rendered["default"])
    env = _worker_env(objs)
    scaled = _by_kind(objs, "ScaledObject")[0]["spec"]
    assert scaled["scaleTargetRef"]["name"] == _one(objs, "Deployment", "worker")["metadata"]["name"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["topic"] == env["RECO_EVENTS_TOPIC"] == "events"
    assert meta["consumerGroup"] == env["RECO_CONSUMER_GROUP"] == "streamreco"
    assert meta["bootstrapServers"] == env["RECO_BOOTSTRAP_SERVERS"]
    assert scaled["maxReplicaCount"] <= int(env["RECO_TOPIC_PARTITIONS"])


def test_hpa_alternative(rendered: dict[str, str]) -> None:
    objs = _objects(rendered["hpa"])
    assert not _by_kind(objs, "ScaledObject")
    (hpa,) = _by_kind(objs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == _one(objs, "Deployment", "worker")["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External" and metric["external"]["metric"]["name"] == "reco_consumer_lag"
    assert "replicas" not in _one(objs, "Deployment", "worker")["spec"]  # the HPA owns the count


def test_kafka_kraft_and_topics(rendered: dict[str, str]) -> None:
    objs = _objects(rendered["default"])
    env = _worker_env(objs)
    (kafka,) = _by_kind(objs, "Kafka")
    (pool,) = _by_kind(objs, "KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}  # KRaft: no ZooKeeper
    assert "zookeeper" not in kafka["spec"]
    topics = {t["spec"]["topicName"]: t for t in _by_kind(objs, "KafkaTopic")}
    assert set(topics) == {env["RECO_EVENTS_TOPIC"], env["RECO_RECOMMENDATIONS_TOPIC"], env["RECO_DLQ_TOPIC"],
                           env["RECO_CONTROL_TOPIC"], env["RECO_ITEM_TALLY_TOPIC"], env["RECO_USER_TALLY_TOPIC"]}
    for tallies in (env["RECO_ITEM_TALLY_TOPIC"], env["RECO_USER_TALLY_TOPIC"]):  # routed by partition number
        assert topics[tallies]["spec"]["partitions"] == int(env["RECO_TOPIC_PARTITIONS"])
    retention_ms = int(env["RECO_TOPIC_RETENTION_HOURS"]) * 3_600_000
    assert all(int(t["spec"]["config"]["retention.ms"]) == retention_ms for t in topics.values())
    assert all(t["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"] for t in topics.values())
    events = topics[env["RECO_EVENTS_TOPIC"]]["spec"]
    assert events["partitions"] >= 8
    assert events["partitions"] == int(env["RECO_TOPIC_PARTITIONS"])
    max_bytes = int(env["RECO_MAX_MESSAGE_BYTES"])
    assert kafka["spec"]["kafka"]["config"]["message.max.bytes"] == max_bytes
    assert int(topics[env["RECO_DLQ_TOPIC"]]["spec"]["config"]["max.message.bytes"]) == 2 * max_bytes


def test_too_few_events_partitions_fail_the_render(tools: dict[str, str]) -> None:
    result = _template(tools, "--set", "kafka.topics.events.partitions=4")
    assert result.returncode != 0 and "at least 8" in result.stderr
    result = _template(tools, "--set", "autoscaling.maxReplicas=12")
    assert result.returncode != 0 and "idle" in result.stderr


def test_triton_official_image_probes_and_gpu(rendered: dict[str, str]) -> None:
    for variant in ("default", "gpu"):
        objs = _objects(rendered[variant])
        deployment = _one(objs, "Deployment", "triton")
        triton = _container(deployment, "triton")
        assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", triton["image"]), triton["image"]
        assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
        assert {m["mountPath"] for m in init["volumeMounts"]} == {"/models"}
        assert "--model-repository=/models/repository" in triton["args"]
        gpus = {k: v.get("nvidia.com/gpu") for k, v in triton["resources"].items()}
        if variant == "gpu":
            assert gpus == {"requests": 1, "limits": 1}
            tolerations = deployment["spec"]["template"]["spec"]["tolerations"]
            assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)
        else:
            assert gpus == {"requests": None, "limits": None}
    env = _worker_env(_objects(rendered["default"]))
    service = _one(_objects(rendered["default"]), "Service", "triton")
    assert service["metadata"]["name"] == env["RECO_TRITON_HOST"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"] == int(env["RECO_TRITON_GRPC_PORT"])


def test_secrets(rendered: dict[str, str]) -> None:
    """The Redis password and the worker's pseudonym key come from Secrets."""
    objs = _objects(rendered["default"])
    secret = _one(objs, "Secret", "redis")
    redis = _container(_one(objs, "Deployment", "redis"), "redis")
    refs = [e["valueFrom"]["secretKeyRef"] for e in redis["env"]]
    assert refs and all(r["name"] == secret["metadata"]["name"] and r["key"] in secret["data"] for r in refs)
    assert "$(REDIS_PASSWORD)" in redis["args"]
    worker = _container(_one(objs, "Deployment", "worker"), "worker")
    password = next(e for e in worker["env"] if e["name"] == "RECO_REDIS_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    key = next(e for e in worker["env"] if e["name"] == "RECO_PSEUDONYM_KEY")["valueFrom"]["secretKeyRef"]
    worker_secret = _one(objs, "Secret", "worker")
    assert key["name"] == worker_secret["metadata"]["name"] and key["key"] in worker_secret["data"]
    assert worker_secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_scraping(rendered: dict[str, str]) -> None:
    objs = _objects(rendered["default"])
    monitors = {m["metadata"]["labels"]["app.kubernetes.io/component"]: m for m in _by_kind(objs, "PodMonitor")}
    assert set(monitors) == {"worker", "triton"}
    for component, monitor in monitors.items():
        pod = _one(objs, "Deployment", component)["spec"]["template"]["metadata"]
        # job="worker" / job="triton", as deploy/prometheus/alerts.yml has them
        assert pod["labels"][monitor["spec"]["jobLabel"]] == component
        assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["labels"].items()
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics"
        assert pod["annotations"]["prometheus.io/scrape"] == "true"  # the fallback
    triton = _one(objs, "Deployment", "triton")["spec"]["template"]["metadata"]["annotations"]
    assert triton["prometheus.io/port"] == str(get_settings().triton_metrics_port)


def _ports(rules: list[dict[str, Any]]) -> set[int]:
    return {p["port"] for rule in rules for p in rule.get("ports", [])}


def test_network_policies(rendered: dict[str, str]) -> None:
    objs = _objects(rendered["default"])
    policies = {p["metadata"]["name"].removeprefix("reco-streamreco-"): p["spec"]
                for p in _by_kind(objs, "NetworkPolicy")}
    deny = policies.pop("default-deny")
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny and "egress" not in deny
    # The chart's own pods only: Strimzi puts the Kafka resource's labels on the brokers too.
    (components,) = deny["podSelector"]["matchExpressions"]
    assert components["key"] == "app.kubernetes.io/component" and components["operator"] == "In"
    assert set(components["values"]) == {"worker", "triton", "redis"}
    s = get_settings()
    worker, triton, redis = policies["worker"], policies["triton"], policies["redis"]
    assert _ports(worker["egress"]) == {9092, s.redis_port, s.triton_grpc_port, 53}
    assert _ports(worker["ingress"]) == {s.metrics_port}
    assert _ports(triton["ingress"]) == {s.triton_grpc_port, s.triton_metrics_port} and triton["egress"] == []
    assert _ports(redis["ingress"]) == {s.redis_port} and redis["egress"] == []
    (kafka,) = _by_kind(objs, "Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["port"] == 9092 and listener["networkPolicyPeers"]  # Strimzi writes the broker side


# --- dashboards ----------------------------------------------------------------------------------------

def test_chart_dashboards_equal_the_sources() -> None:
    """The chart can only read files inside its folder, so it holds copies; they must not drift.
    Fix: cp deploy/grafana/dashboards/*.json deploy/helm/streamreco/dashboards/"""
    sources = {p.name: p.read_bytes() for p in DASHBOARDS.glob("*.json")}
    copies = {p.name: p.read_bytes() for p in (CHART / "dashboards").glob("*.json")}
    assert sources, DASHBOARDS
    assert sorted(copies) == sorted(sources), "dashboard files differ"
    drifted = [name for name in sources if copies[name] != sources[name]]
    assert not drifted, f"chart copies differ from deploy/grafana/dashboards: {drifted}"


def test_dashboard_configmaps(rendered: dict[str, str]) -> None:
    maps = [m for m in _by_kind(_objects(rendered["default"]), "ConfigMap")
            if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert sorted(name for m in maps for name in m["data"]) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for m in maps:
        for name, text in m["data"].items():
            assert json.loads(text) == json.loads((DASHBOARDS / name).read_text()), name


# --- docker compose and the Dockerfile -----------------------------------------------------------------

def test_compose_against_the_compose_spec(tools: dict[str, str]) -> None:
    result = _run([tools["CHECK_JSONSCHEMA"], "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"kafka", "redis", "triton", "prometheus", "grafana", "worker"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", services["triton"]["image"])
    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
    unknown = set(worker["environment"]) - SETTINGS_NAMES
    assert "RECO_PSEUDONYM_KEY" in worker["environment"]
    assert not unknown, f"not settings of contract/settings.py: {sorted(unknown)}"
    # Every file or folder the services mount or build from is in the repo.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).exists()
    grafana = services["grafana"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]


def test_dockerfile_copies_exist() -> None:
    """Every COPY source of deploy/Dockerfile is in the repo, and the build context lets it in."""
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().split()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _dest = shlex.split(line)[1:]
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") in allowed, f"{source} is kept out by deploy/Dockerfile.dockerignore"
