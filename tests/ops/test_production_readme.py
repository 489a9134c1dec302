"""The README's production steps name everything the production overlay needs to start.

The overlay is rendered as `kubectl apply -k` would; every Secret a workload mounts or
reads (with each key it reads), every ConfigMap it reads that the overlay does not make
itself, and every topic the services use must appear in the README's "Running in
production" section. A name the steps leave out is a pod that never starts; a Secret the
steps name that nothing mounts is a step that misleads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from services.common.audit import AUDIT_TOPIC
from services.common.kafka import Topics
from tests.ops.helpers import kustomize

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "deploy" / "k8s" / "overlays" / "production"


def production_steps() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## Running in production")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _walk(node: Any, found: dict[str, set[str]], configmaps: set[str]) -> None:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "secretKeyRef":
                found.setdefault(value["name"], set()).add(value["key"])
            elif name == "secret" and isinstance(value, dict) and "secretName" in value:
                found.setdefault(value["secretName"], set())
            elif name == "secretRef":
                found.setdefault(value["name"], set())
            elif name in {"configMapKeyRef", "configMapRef"} or (
                name == "configMap" and isinstance(value, dict) and "name" in value
            ):
                configmaps.add(value["name"])
            _walk(value, found, configmaps)
    elif isinstance(node, list):
        for item in node:
            _walk(item, found, configmaps)


def needs() -> tuple[dict[str, set[str]], set[str], set[str]]:
    """Return the Secrets (with keys) the workloads read, the ConfigMaps, those rendered."""
    documents = kustomize(OVERLAY)
    secrets: dict[str, set[str]] = {}
    configmaps: set[str] = set()
    for document in documents:
        _walk(document, secrets, configmaps)
    rendered = {d["metadata"]["name"] for d in documents if d["kind"] in {"ConfigMap", "Secret"}}
    return secrets, configmaps, rendered


def test_every_secret_the_overlay_mounts_is_in_the_steps_with_its_keys() -> None:
    steps = production_steps()
    secrets, _, rendered = needs()
    missing = [name for name in secrets if name not in rendered and name not in steps]
    assert not missing, f"Secrets the workloads need but the README does not create: {missing}"
    for name, keys in secrets.items():
        if name in rendered:
            continue
        # The `kubectl create secret` line of this Secret names each key it must hold.
        creation = re.search(rf"secret generic {re.escape(name)}\b[^\n]*(?:\n\s+--[^\n]*)*", steps)
        assert creation, f"no `kubectl create secret generic {name}` in the README"
        for key in keys:
            assert f"{key}=" in creation.group(0) or f"{key} " in creation.group(0), (
                f"the README's {name} lacks the key {key}"
            )


def test_the_steps_name_no_secret_nothing_mounts() -> None:
    secrets, _, _ = needs()
    named = set(re.findall(r"secret generic ([a-z0-9-]+)", production_steps()))
    assert named <= set(secrets), f"the README creates Secrets nothing uses: {named - set(secrets)}"


def test_every_configmap_read_is_made_by_the_overlay_or_the_steps() -> None:
    steps = production_steps()
    _, configmaps, rendered = needs()
    missing = [name for name in configmaps if name not in rendered and name not in steps]
    assert not missing, f"ConfigMaps the workloads read but nothing creates: {missing}"


def test_every_topic_the_services_use_is_in_the_steps() -> None:
    steps = production_steps()
    topics = [*Topics().model_dump().values(), AUDIT_TOPIC]
    missing = [topic for topic in topics if f"`{topic}`" not in steps]
    assert not missing, f"topics the README does not have created: {missing}"
