"""The production overlay's Kafka ACL Job against deploy/k8s/README.md's ACL table.

The overlay is rendered with kustomize; every `acl` line of the Job's script (and of its
loop over the direct producers, with `<name>` for the producer) must be a row of the
table, and every row of the table a line of the Job: the table people read is the one
the broker enforces. Then the boundary itself: who may write the events, notifications
and commands topics.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest

from tests.ops.helpers import K8S_PRODUCTION, REPO, kustomize

README = REPO / "deploy" / "k8s" / "README.md"
Acl = tuple[str, str, str, str]  # (kind, resource name, principal, operation)
KINDS = {
    "topic": "topic",
    "topics": "topic",
    "topics prefixed": "topic-prefix",
    "group": "group",
    "groups prefixed": "group-prefix",
    "cluster": "cluster",
}


def table_acls() -> set[Acl]:
    """Every (kind, name, principal, OPERATION) the README's ACL table grants."""
    text = README.read_text()
    section = text[text.index("## Kafka principals and ACLs") : text.index("## Topics")]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    assert rows, "no ACL table"
    acls: set[Acl] = set()
    principal = ""
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        who, resource, operations = cells[0], cells[1], cells[2]
        if who:
            principal = who.strip("`")
        words = resource.split("`")[0].strip()
        kind = KINDS[words]
        names = re.findall(r"`([^`]+)`", resource) if kind != "cluster" else ["kafka-cluster"]
        assert names, row
        for name in names:
            for operation in operations.split(","):
                acls.add((kind, name, principal, operation.strip().upper()))
    return acls


def job_script(rendered: list[dict[str, Any]]) -> str:
    job = next(
        d
        for d in rendered
        if d["kind"] == "Job" and d["metadata"]["name"] == "safeguard-kafka-acls"
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    return str(container["args"][0])


def job_acls(script: str) -> set[Acl]:
    """Every ACL the Job's `acl` lines add (the direct producers' loop with `<name>`)."""
    acls: set[Acl] = set()
    for raw in script.splitlines():
        line = raw.strip()
        if not line.startswith("acl ") or line.startswith("acl()"):
            continue
        words = shlex.split(line.replace("${producer}", "<name>"))
        _, principal, kind, name, operations = words
        for operation in operations.split(","):
            acls.add((kind, name, principal, operation.upper()))
    return acls


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return kustomize(K8S_PRODUCTION)


def test_the_job_grants_exactly_the_readmes_table(rendered: list[dict[str, Any]]) -> None:
    table, job = table_acls(), job_acls(job_script(rendered))
    assert len(table) > 40
    assert job - table == set(), "in the Job, not in the README's table"
    assert table - job == set(), "in the README's table, not in the Job"


def writers(acls: set[Acl], topic: str) -> set[str]:
    return {p for kind, name, p, op in acls if kind == "topic" and name == topic and op == "WRITE"}


def test_only_ingest_writes_events_only_notify_notifications_only_the_desk_commands() -> None:
    acls = table_acls()
    assert writers(acls, "safeguarding.events.v1") == {"User:safeguard-ingest"}
    assert writers(acls, "safeguarding.events.<name>.v1") == {"User:safeguard-producer-<name>"}
    assert writers(acls, "safeguarding.notifications.v1") == {"User:safeguard-notify"}
    assert writers(acls, "safeguarding.commands.v1") == {"User:safeguard-desk"}
    # No prefixed grant reaches the contract topics with a write.
    for kind, name, principal, operation in acls:
        if kind == "topic-prefix" and operation in {"WRITE", "ALL"}:
            assert not "safeguarding.".startswith(name), (principal, name)
            assert not name.startswith("safeguarding"), (principal, name)
    # Nobody but the platform's acl-admin may change ACLs; no service alters configs.
    assert not {a for a in acls if a[3] in {"ALTER", "ALL", "CLUSTERACTION"}}
    services = {"User:safeguard-ingest", "User:safeguard-risk", "User:safeguard-notify"}
    assert not {a for a in acls if a[2] in services | {"User:safeguard-desk"} and "CONFIGS" in a[3]}


def test_the_job_verifies_what_the_broker_holds_and_keeps_its_password_off_the_command_line(
    rendered: list[dict[str, Any]],
) -> None:
    script = job_script(rendered)
    assert "--list --resource-pattern-type match" in script
    assert 'exit "${status}"' in script
    assert "${KAFKA_PASSWORD}" in script.split("EOF")[1]  # inside the properties file only
    assert "--command-config /tmp/client.properties" in script
    config = next(
        d
        for d in rendered
        if d["kind"] == "ConfigMap"
        and d["metadata"]["name"].startswith("safeguard-kafka")
        and "direct-producers" in d.get("data", {})
    )
    assert config["data"]["direct-producers"] == ""  # none until risk reads their topics
