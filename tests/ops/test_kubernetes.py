"""The kustomize base and production overlay render and are valid, safe manifests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.ops.helpers import (
    COMMANDS,
    K8S_BASE,
    K8S_PRODUCTION,
    REPO,
    RULES_FILES,
    kustomize,
    load_yaml,
    setting_exists,
)

# Prometheus-operator's kinds have no schema in kubernetes-validate: checked below.
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# The oldest and newest Kubernetes versions the manifests are checked against.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
# Secrets the operators create (kustomization.yaml says how); the manifests only refer.
EXTERNAL_SECRETS = {
    "safeguard-tokens",
    "safeguard-smtp",
    "safeguard-webhook-secrets",
    "safeguard-risk-alert-id",
    "safeguard-desk-database",
    # One Kafka principal per service (deploy/k8s/README.md), and two for operations.
    "safeguard-kafka-ingest",
    "safeguard-kafka-risk",
    "safeguard-kafka-notify",
    "safeguard-kafka-desk",
    "safeguard-kafka-topic-admin",
    "safeguard-kafka-exporter",
}
WORKLOADS = {"Deployment", "StatefulSet"}


@pytest.fixture(scope="module", params=["base", "production"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    directory = {"base": K8S_BASE, "production": K8S_PRODUCTION}[request.param]
    return kustomize(directory)


def of_kind(docs: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in kinds]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(
    rendered: list[dict[str, Any]], version: str
) -> None:
    checked = 0
    for doc in rendered:
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {exc.path}")
        checked += 1
    assert checked >= 15


def test_the_expected_objects_are_there(rendered: list[dict[str, Any]]) -> None:
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in rendered}
    assert {
        ("Deployment", "safeguard-ingest"),
        ("StatefulSet", "safeguard-risk"),
        ("StatefulSet", "safeguard-notify"),
        ("Deployment", "safeguard-desk"),
        ("Job", "safeguard-desk-migrate"),
        ("PrometheusRule", "safeguard"),
        ("ServiceMonitor", "safeguard"),
    } <= names
    for kind in ("PodDisruptionBudget", "NetworkPolicy", "Service", "ConfigMap"):
        assert of_kind(rendered, kind), kind


def test_every_service_workload_is_locked_down(rendered: list[dict[str, Any]]) -> None:
    for workload in of_kind(rendered, *WORKLOADS):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert "memory" in container["resources"]["limits"], where
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container, where


def test_safeguard_containers_run_their_command_and_probe_their_pages(
    rendered: list[dict[str, Any]],
) -> None:
    seen = set()
    for workload in of_kind(rendered, *WORKLOADS):
        for container in containers(workload):
            command = (container.get("command") or [""])[0]
            if command not in COMMANDS:
                continue
            seen.add(command)
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert str(ports["http"]) == env[f"{COMMANDS[command]}PORT"]
    assert seen == set(COMMANDS)


def test_every_environment_variable_is_a_setting(rendered: list[dict[str, Any]]) -> None:
    for workload in of_kind(rendered, *WORKLOADS):
        for container in containers(workload):
            for variable in container.get("env", []):
                assert setting_exists(variable["name"]), (
                    f"{workload['metadata']['name']}: {variable['name']} is no setting"
                )


def test_stores_live_on_volume_claims(rendered: list[dict[str, Any]]) -> None:
    for workload in of_kind(rendered, "StatefulSet"):
        claims = {c["metadata"]["name"] for c in workload["spec"]["volumeClaimTemplates"]}
        for container in containers(workload):
            env = {e["name"]: e.get("value") for e in container["env"]}
            prefix = COMMANDS[container["command"][0]]
            assert env[f"{prefix}STREAM__STORE"] == "rocksdb://"
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts[env[f"{prefix}STREAM__DATA_DIR"]] in claims


def test_every_workload_has_a_disruption_budget_and_a_service(
    rendered: list[dict[str, Any]],
) -> None:
    budgets = of_kind(rendered, "PodDisruptionBudget")
    services = of_kind(rendered, "Service")
    for workload in of_kind(rendered, *WORKLOADS):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        name = workload["metadata"]["name"]
        if name != "safeguard-kafka-exporter":
            assert any(selects(b["spec"]["selector"]["matchLabels"], labels) for b in budgets), name
        assert any(selects(s["spec"]["selector"], labels) for s in services), name
    for statefulset in of_kind(rendered, "StatefulSet"):
        headless = [
            s for s in services if s["metadata"]["name"] == statefulset["spec"]["serviceName"]
        ]
        assert headless, statefulset["metadata"]["name"]
        assert headless[0]["spec"]["clusterIP"] == "None"


def test_references_resolve(rendered: list[dict[str, Any]]) -> None:
    config_maps = {doc["metadata"]["name"]: doc["data"] for doc in of_kind(rendered, "ConfigMap")}
    for workload in of_kind(rendered, *WORKLOADS):
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "secret" in volume:
                assert volume["secret"]["secretName"] in EXTERNAL_SECRETS
        for container in containers(workload):
            for variable in container.get("env", []):
                source = variable.get("valueFrom", {})
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    assert ref["key"] in config_maps[ref["name"]], variable["name"]
                if "secretKeyRef" in source:
                    assert source["secretKeyRef"]["name"] in EXTERNAL_SECRETS, variable["name"]


def test_service_monitor_scrapes_the_four_services_as_the_rules_name_them(
    rendered: list[dict[str, Any]],
) -> None:
    monitor = next(
        d
        for d in rendered
        if d["metadata"]["name"] == "safeguard" and d["kind"] == "ServiceMonitor"
    )
    scraped = [
        s
        for s in of_kind(rendered, "Service")
        if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    # The job label is the Service's name, as the rules match it (job="safeguard-desk", ...).
    assert sorted(s["metadata"]["name"] for s in scraped) == [
        "safeguard-desk",
        "safeguard-ingest",
        "safeguard-notify",
        "safeguard-risk",
    ]
    port = monitor["spec"]["endpoints"][0]["port"]
    assert all(port in {p["name"] for p in s["spec"]["ports"]} for s in scraped)
    rule = next(d for d in rendered if d["kind"] == "PrometheusRule")
    assert rule["spec"]["groups"] == [g for f in RULES_FILES for g in load_yaml(f)["groups"]]


def test_policy_config_map_is_the_repository_policy() -> None:
    copy: Path = K8S_BASE / "policy" / "default.yaml"
    assert copy.read_text() == (REPO / "policy" / "default.yaml").read_text(), (
        "kustomize reads no file outside its folder: "
        "cp policy/default.yaml deploy/k8s/base/policy/default.yaml"
    )


def test_production_pins_the_image_and_replicates() -> None:
    rendered = kustomize(K8S_PRODUCTION)
    assert any(doc["kind"] == "Namespace" for doc in rendered)
    for workload in of_kind(rendered, *WORKLOADS):
        assert workload["metadata"]["namespace"] == "safeguard"
        assert workload["spec"]["replicas"] >= 2 or "exporter" in workload["metadata"]["name"]
        for container in containers(workload):
            assert ":" in container["image"], container["image"]
            assert not container["image"].endswith(":latest")
    kafka = next(
        d
        for d in of_kind(rendered, "ConfigMap")
        if d["metadata"]["name"].startswith("safeguard-kafka")
    )
    assert kafka["data"]["replication-factor"] == "3"
    assert kafka["data"]["security-protocol"] == "SASL_SSL"


def test_secrets_are_never_on_a_command_line(rendered: list[dict[str, Any]]) -> None:
    """A secret-backed variable expanded into a command or its arguments (`$(NAME)`) would
    be readable by anyone on the node in the process list."""
    workloads = of_kind(rendered, *WORKLOADS, "Job")
    assert workloads
    for workload in workloads:
        for container in containers(workload):
            secret_backed = {
                e["name"]
                for e in container.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            words = [*container.get("command", []), *container.get("args", [])]
            where = f"{workload['metadata']['name']}/{container['name']}"
            for name in secret_backed:
                assert not any(f"$({name})" in word for word in words), (where, name)
            assert not any(
                "password=" in word.lower() and "$" not in word and "@" not in word
                for word in words
            ), where


def test_each_service_is_its_own_kafka_principal() -> None:
    rendered = kustomize(K8S_PRODUCTION)
    seen: dict[str, str] = {}
    for workload in of_kind(rendered, *WORKLOADS):
        for container in containers(workload):
            command = (container.get("command") or [""])[0]
            if command not in COMMANDS:
                continue
            refs = {
                e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
                for e in container["env"]
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            prefix = COMMANDS[command]
            seen[command] = refs[f"{prefix}KAFKA__SASL_PASSWORD"]
            assert refs[f"{prefix}KAFKA__SASL_USERNAME"] == seen[command]
    assert len(set(seen.values())) == len(COMMANDS) == len(seen), seen


def test_production_egress_goes_to_named_addresses_only() -> None:
    rendered = kustomize(K8S_PRODUCTION)
    policies = [
        p for p in of_kind(rendered, "NetworkPolicy") if "Egress" in p["spec"]["policyTypes"]
    ]
    assert policies
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            name = policy["metadata"]["name"]
            # A rule without `to` allows every address on its ports.
            assert rule.get("to"), f"{name}: an egress rule open to every address"
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    assert not peer["ipBlock"]["cidr"].endswith("/0"), name
            assert rule.get("ports"), f"{name}: an egress rule open on every port"


def test_production_keeps_the_audit_trail_two_years_by_default() -> None:
    rendered = kustomize(K8S_PRODUCTION)
    topics = next(
        d
        for d in of_kind(rendered, "ConfigMap")
        if d["metadata"]["name"].startswith("safeguard-topics")
    )
    assert int(topics["data"]["audit-retention-ms"]) == 2 * 365 * 24 * 3600 * 1000
    job = next(d for d in of_kind(rendered, "Job") if "audit-retention" in d["metadata"]["name"])
    env = {e["name"]: e for e in containers(job)[0]["env"]}
    assert env["TOPIC"]["value"] == "safeguarding.audit.v1"
    assert env["RETENTION_MS"]["valueFrom"]["configMapKeyRef"]["name"] == topics["metadata"]["name"]


def test_the_cloudnative_pg_component_gives_the_desk_its_database(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    component = K8S_BASE.parent / "components" / "cloudnative-pg"
    (overlay / "kustomization.yaml").write_text(
        "resources:\n"
        f"  - {os.path.relpath(K8S_BASE, overlay)}\n"
        "components:\n"
        f"  - {os.path.relpath(component, overlay)}\n"
    )
    rendered = kustomize(overlay)
    (cluster,) = [d for d in rendered if d["kind"] == "Cluster"]
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == "safeguard"
    app_secret = {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}
    urls = [
        variable["valueFrom"]["secretKeyRef"]
        for workload in of_kind(rendered, "Deployment", "Job")
        for container in containers(workload)
        for variable in container.get("env", [])
        if variable["name"] == "DESK_DATABASE_URL"
    ]
    assert urls == [app_secret, app_secret]  # the desk and its migration Job
    egress = next(
        p
        for p in of_kind(rendered, "NetworkPolicy")
        if p["metadata"]["name"] == "safeguard-desk-database"
    )["spec"]["egress"]
    assert egress[0]["to"] == [
        {"podSelector": {"matchLabels": {"cnpg.io/cluster": cluster["metadata"]["name"]}}}
    ]
