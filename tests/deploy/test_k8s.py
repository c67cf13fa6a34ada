"""The Kubernetes manifests under configs/k8s: schema-valid, and consistent with the app they deploy."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from monolith.admission import Admission
from monolith.config import load_settings
from monolith.scheduling import BackgroundBudget
from monolith.tracing import exporter_names

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "configs" / "k8s"
KUBERNETES_VERSION = "1.33"
# Custom resources: kubernetes-validate knows none of them; their schemas are written from the operators' CRD
# references (crd_schemas/README.md says how).
CRD_SCHEMAS = Path(__file__).with_name("crd_schemas")
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "cnpg-cluster.json",
}
# Applied on their own: KEDA instead of the HPA, and a PostgreSQL that may be a managed one instead.
ALTERNATIVES = {"keda-scaledobject.yaml", "postgres-cnpg.yaml"}


def documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def find(kind: str) -> dict:
    return next(d for _, d in documents() if d["kind"] == kind)


@pytest.mark.parametrize(("name", "doc"), documents(), ids=lambda x: x if isinstance(x, str) else x["kind"])
def test_manifest_validates_against_the_kubernetes_schema(name: str, doc: dict) -> None:
    validate(doc)


def validate(doc: dict) -> None:
    crd = CRDS.get((doc["apiVersion"], doc["kind"]))
    if crd is None:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return
    schema = json.loads((CRD_SCHEMAS / crd).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


def mutated(kind: str, path: list[str | int], value: object) -> dict:
    doc = copy.deepcopy(find(kind))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ServiceMonitor", ["spec", "endpoints", 0, "interval"], "10"),  # a duration needs its unit
        ("ServiceMonitor", ["spec", "endpoints", 0, "prot"], "http"),  # a typo
        ("ServiceMonitor", ["spec", "selector"], None),  # required
        ("ScaledObject", ["spec", "triggers", 0, "metadata", "threshold"], 4),  # KEDA's metadata is strings only
        ("ScaledObject", ["spec", "minReplicas"], 1),  # the HPA's name, not KEDA's
        ("ScaledObject", ["spec", "advanced", "horizontalPodAutoscalerConfig", "behavior", "scaleDown"], {"window": 3}),
        ("Cluster", ["spec", "instances"], 0),
        ("Cluster", ["spec", "storage", "size"], "20 GB"),
        ("Cluster", ["spec", "bootstrap", "initdb", "dbname"], "app"),
    ],
)
def test_a_custom_resource_with_a_wrong_field_fails_its_schema(kind: str, path: list, value: object) -> None:
    broken = mutated(kind, path, value)
    if value is None:
        target = broken
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_kustomization_lists_every_manifest_but_the_alternatives() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", *ALTERNATIVES}
    assert listed == on_disk


def test_probes_hit_the_health_routes_and_the_grace_period_covers_the_drain() -> None:
    pod = find("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # slow model loads
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    gpu = load_settings(ROOT / "configs" / "gpu.yaml")
    pre_stop_s = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert gpu.shutdown.drain_s > gpu.server.request_timeout_s  # the longest request finishes
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + gpu.shutdown.drain_s
    assert container["args"][:3] == ["serve", "--config", "configs/gpu.yaml"]


def test_hpa_scales_on_the_metrics_the_adapter_rules_export() -> None:
    rules = yaml.safe_load(find("ConfigMap")["data"]["config.yaml"])["rules"]
    exported = {rule["name"]["as"] for rule in rules}
    hpa = find("HorizontalPodAutoscaler")["spec"]
    assert exported == {"monolith_queue_depth", "monolith_async_backlog", "monolith_batch_backlog"}
    assert {m["pods"]["metric"]["name"] for m in hpa["metrics"]} == exported
    for rule in rules:
        assert rule["seriesQuery"].startswith(rule["name"]["as"] + "{")
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert hpa["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert hpa["minReplicas"] >= 1 and hpa["maxReplicas"] > hpa["minReplicas"]


def test_keda_alternative_queries_the_queue_depth() -> None:
    scaled = find("ScaledObject")["spec"]
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "prometheus" and "monolith_queue_depth" in trigger["metadata"]["query"]
    assert scaled["scaleTargetRef"]["name"] == find("Deployment")["metadata"]["name"]
    assert scaled["cooldownPeriod"] == 300


def test_service_monitor_scrapes_the_metrics_port() -> None:
    monitor = find("ServiceMonitor")["spec"]
    service = find("Service")
    assert monitor["selector"]["matchLabels"] == service["metadata"]["labels"]
    assert monitor["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["endpoints"][0]["path"] == "/metrics"


def test_the_validator_catches_a_misspelt_field() -> None:
    broken = find("Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def metric_target(name: str) -> float:
    hpa = find("HorizontalPodAutoscaler")["spec"]
    return float(
        next(m for m in hpa["metrics"] if m["pods"]["metric"]["name"] == name)["pods"]["target"]["averageValue"]
    )


def test_the_async_backlog_target_is_one_replica_s_background_share_under_real_time_load() -> None:
    gpu = load_settings(ROOT / "configs" / "gpu.yaml")
    slots = BackgroundBudget(
        gpu, Admission()
    ).limit  # where the budget starts beside real-time traffic: half the engine
    assert metric_target("monolith_async_backlog") == slots
    keda = {t["metadata"]["query"].split("{")[0].split("(")[-1]: t for t in find("ScaledObject")["spec"]["triggers"]}
    assert float(keda["monolith_async_backlog"]["metadata"]["threshold"]) == slots


def test_replicas_share_state_through_postgresql_and_the_files_volume_only() -> None:
    pod = find("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    database = env["MONOLITH_STORE__DATABASE"]["valueFrom"]["secretKeyRef"]
    cluster = find("Cluster")
    # CloudNativePG's application Secret: `<cluster>-app`, its connection URI under `uri`.
    assert database == {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}
    assert not database.get("optional"), "without it a replica would fall back to a SQLite file of its own"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == "PersistentVolumeClaim"}
    # data_dir is per-pod scratch; the model cache holds only weights; batch files sit on their own RWX volume.
    assert "emptyDir" in volumes[mounts[env["MONOLITH_DATA_DIR"]["value"]]]
    assert env["HF_HOME"]["value"].startswith(next(p for p, n in mounts.items() if n == "model-cache"))
    files_mount = next(p for p in mounts if env["MONOLITH_FILES__DIR"]["value"].startswith(p + "/"))
    files_claim = volumes[mounts[files_mount]]["persistentVolumeClaim"]["claimName"]
    assert claims[files_claim]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert load_settings(ROOT / "configs" / "gpu.yaml").store.database.endswith(".sqlite3"), "the URL comes from env"


def test_the_pod_runs_hardened() -> None:
    pod = find("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a read-only root needs a writable /tmp"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOME"] == env["TMPDIR"] == "/tmp"
    for kind in ("requests", "limits"):
        assert "ephemeral-storage" in container["resources"][kind]


def test_api_keys_come_from_a_mounted_secret_file() -> None:
    pod = find("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    keys_file = env["MONOLITH_SERVER__API_KEYS_FILE"]
    mount = next(m for m in container["volumeMounts"] if keys_file.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert mount["readOnly"] is True and volume["secret"]["secretName"]
    assert keys_file.endswith("/" + volume["secret"]["items"][0]["path"])


def test_the_network_policy_admits_the_api_port_and_only_the_egress_a_replica_needs() -> None:
    policy = find("NetworkPolicy")["spec"]
    container = find("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert policy["podSelector"]["matchLabels"] == find("Deployment")["spec"]["selector"]["matchLabels"]
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [container["ports"][0]["containerPort"]]
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 6333, 6334, 5432, 4317, 4318, 80, 443}
    database = next(r for r in policy["egress"] if any(p["port"] == 5432 for p in r["ports"]))
    assert database["to"][0]["podSelector"]["matchLabels"]["cnpg.io/cluster"] == find("Cluster")["metadata"]["name"]
    public = next(r for r in policy["egress"] if any(p["port"] == 443 for p in r["ports"]))["to"][0]["ipBlock"]
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(public["except"])


def test_traces_go_to_the_collector_the_network_policy_lets_the_pod_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    """Configured by the standard OTEL_* variables only (monolith.tracing reads nothing else)."""
    container = find("Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert exporter_names({k: v for k, v in env.items() if v is not None}) == ["otlp"]
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    service, namespace = endpoint.hostname.split(".")[:2]
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf" and endpoint.port == 4318
    collector = next(r for r in find("NetworkPolicy")["spec"]["egress"] if any(p["port"] == 4318 for p in r["ports"]))
    peer = collector["to"][0]
    assert peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == namespace
    assert service == "otel-collector" and 4317 in {p["port"] for p in collector["ports"]}
    # The resource attributes name the pod through the downward API, declared before they are used.
    names = [e["name"] for e in container["env"]]
    assert names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
    assert "$(POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]
    # Its log lines parse as JSON and carry the trace ids, as a log pipeline wants them.
    monkeypatch.setenv("MONOLITH_SERVER__LOG_FORMAT", env["MONOLITH_SERVER__LOG_FORMAT"])
    assert load_settings(ROOT / "configs" / "gpu.yaml").server.log_format == "json"


def test_the_batch_backlog_target_is_whole_shards_the_same_for_hpa_and_keda() -> None:
    gpu = load_settings(ROOT / "configs" / "gpu.yaml")
    target = metric_target("monolith_batch_backlog")
    assert target % gpu.batch.shard_lines == 0 and target >= gpu.batch.shard_lines * gpu.batch.shards_per_replica
    keda = {t["metadata"]["query"].split("{")[0].split("(")[-1]: t for t in find("ScaledObject")["spec"]["triggers"]}
    assert float(keda["monolith_batch_backlog"]["metadata"]["threshold"]) == target
