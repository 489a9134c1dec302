"""docker-compose.yml is a valid Compose file that wires the whole system together.

It is the development stack (published development token, default Grafana credentials):
every port it publishes is bound to 127.0.0.1, and its header says so.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from services.common.audit import AUDIT_TOPIC
from services.common.auth import Authenticator
from services.common.kafka import Topics
from services.desk.settings import DeskSettings
from services.ingest.settings import IngestSettings
from services.notify.app import check_settings
from services.notify.policy import load_policy as load_notify_policy
from services.notify.settings import NotifySettings
from services.risk.settings import RiskSettings
from tests.ops.helpers import COMMANDS, COMPOSE_FILE, DEPLOY, REPO, load_yaml, setting_exists

SAFEGUARD = ["ingest", "risk", "notify", "desk"]
# The services people and systems call hold tokens; the stream processors hold none.
CALLED = {"ingest", "desk"}
LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return document


def compose_schema() -> dict[str, Any]:
    # The Compose Specification's JSON Schema, as vendored by check-jsonschema (offline).
    text = (
        resources.files("check_jsonschema")
        .joinpath("builtin_schemas/vendor/compose-spec.json")
        .read_text()
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(compose_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_the_schema_check_can_fail(compose: dict[str, Any]) -> None:
    broken = {**compose, "services": {"x": {"image": "a", "restart": ["always"]}}}
    assert list(jsonschema.Draft7Validator(compose_schema()).iter_errors(broken))


def test_every_service_is_there(compose: dict[str, Any]) -> None:
    assert {
        "kafka",
        "kafka-topics",
        *SAFEGUARD,
        "prometheus",
        "grafana",
        "mailpit",
        "kafka-exporter",
        "postgres",
        "desk-migrate",
    } <= set(compose["services"])
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_topic_creation_covers_the_contract_topics(compose: dict[str, Any]) -> None:
    script = compose["services"]["kafka-topics"]["command"][0]
    for topic in [*Topics().model_dump().values(), AUDIT_TOPIC]:
        line = next(line for line in script.splitlines() if f"create {topic} " in line)
        assert int(line.split()[2]) >= 1, line
    for name in SAFEGUARD:
        needs = compose["services"][name]["depends_on"]["kafka-topics"]
        assert needs["condition"] == "service_completed_successfully"


def test_services_run_their_command_with_real_settings(compose: dict[str, Any]) -> None:
    for name in SAFEGUARD:
        service = compose["services"][name]
        command = service["command"][0]
        prefix = COMMANDS[command]
        assert prefix == f"{name.upper()}_"
        env = service["environment"]
        for variable in env:
            assert setting_exists(variable), f"{name}: {variable} is no setting"
        port = env[f"{prefix}PORT"]
        assert f"{LOOPBACK}:{port}:{port}" in service["ports"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert (f"{prefix}TOKENS_FILE" in env) == (name in CALLED), name
        if name in CALLED:
            assert mounts[env[f"{prefix}TOKENS_FILE"]] == "./config/dev-tokens.yaml"
        if name in {"risk", "notify"}:
            assert mounts[env[f"{prefix}POLICY_FILE"]] == "./policy/default.yaml"
            assert env[f"{prefix}STREAM__STORE"] == "rocksdb://"
            data = env[f"{prefix}STREAM__DATA_DIR"]
            assert mounts[data] in compose["volumes"], f"{name}: {data} is not on a volume"
    for volume in (v for s in compose["services"].values() for v in s.get("volumes", [])):
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (REPO / source).exists(), source


def test_notify_mails_to_mailpit(compose: dict[str, Any]) -> None:
    env = compose["services"]["notify"]["environment"]
    assert env["NOTIFY_SMTP__HOST"] == "mailpit"
    assert env["NOTIFY_SMTP__PORT"] == "1025"
    assert compose["services"]["mailpit"]["image"].startswith("axllent/mailpit:")


def test_prometheus_scrapes_the_four_services_and_loads_the_rules(
    compose: dict[str, Any],
) -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    for name in SAFEGUARD:
        port = compose["services"][name]["environment"][f"{name.upper()}_PORT"]
        assert targets[f"safeguard-{name}"] == f"{name}:{port}"
    assert "kafka-exporter" in targets
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in mounts
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def published_host_ips(port: str | int | dict[str, Any]) -> list[str | None]:
    """Return the host address a `ports` entry binds to (None: every interface)."""
    if isinstance(port, dict):  # long syntax
        return [port.get("host_ip")] if "published" in port else []
    text = str(port).rsplit("/", 1)[0]  # drop /tcp, /udp
    if text.startswith("["):  # [::1]:8080:8080
        return [text[1 : text.index("]")]]
    parts = text.split(":")
    if len(parts) == 1:  # "8080": a random host port on every interface
        return [None]
    return [parts[0] if len(parts) == 3 else None]  # ip:host:container


def test_published_ports_parse() -> None:
    assert published_host_ips("127.0.0.1:8080:8080") == ["127.0.0.1"]
    assert published_host_ips("8080:8080") == [None]
    assert published_host_ips("8080") == [None]
    assert published_host_ips("0.0.0.0:8080:8080/tcp") == ["0.0.0.0"]  # noqa: S104
    assert published_host_ips({"target": 80, "published": 8080}) == [None]
    assert published_host_ips({"target": 80, "host_ip": "127.0.0.1", "published": 8080}) == [
        "127.0.0.1"
    ]


def test_every_published_port_is_bound_to_loopback(compose: dict[str, Any]) -> None:
    # The stack carries the development token and Grafana's default credentials: nothing
    # it publishes may be reachable from another machine.
    exposed = [
        f"{name}: {port}"
        for name, service in compose["services"].items()
        for port in service.get("ports", [])
        if any(ip != LOOPBACK for ip in published_host_ips(port))
    ]
    assert not exposed, f"published beyond 127.0.0.1: {exposed}"
    assert any(service.get("ports") for service in compose["services"].values())


def test_header_says_development_only() -> None:
    header = "".join(
        line for line in COMPOSE_FILE.read_text().splitlines(keepends=True) if line.startswith("#")
    )
    for needed in (
        "DEVELOPMENT ONLY",
        "safeguard-dev-token",
        "admin/admin",
        "127.0.0.1",
        "deploy/k8s/overlays/production",
    ):
        assert needed in header, needed


def service_environment(compose: dict[str, Any], name: str) -> dict[str, str]:
    """Return a service's compose environment, its mounted files mapped to the repository."""
    prefix = name.upper()
    env = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
    if f"{prefix}_TOKENS_FILE" in env:
        env[f"{prefix}_TOKENS_FILE"] = str(REPO / "config" / "dev-tokens.yaml")
    if f"{prefix}_POLICY_FILE" in env:
        env[f"{prefix}_POLICY_FILE"] = str(REPO / "policy" / "default.yaml")
    return env


def test_services_accept_their_development_configuration(compose: dict[str, Any]) -> None:
    # What each service checks before it starts: the development token (refused outside
    # development mode), risk's alert-id secret, a signing secret for every webhook.
    for name in SAFEGUARD:
        assert compose["services"][name]["environment"]["SAFEGUARD_ENV"] == "development"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SAFEGUARD_ENV", raising=False)  # the test session sets it
        for variable, value in service_environment(compose, "ingest").items():
            patch.setenv(variable, value)
        IngestSettings().authenticator()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SAFEGUARD_ENV", raising=False)  # the test session sets it
        for variable, value in service_environment(compose, "risk").items():
            patch.setenv(variable, value)
        assert RiskSettings().alert_key()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SAFEGUARD_ENV", raising=False)  # the test session sets it
        for variable, value in service_environment(compose, "notify").items():
            patch.setenv(variable, value)
        notify = NotifySettings()
        check_settings(load_notify_policy(notify.policy_file), notify)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SAFEGUARD_ENV", raising=False)  # the test session sets it
        for variable, value in service_environment(compose, "desk").items():
            patch.setenv(variable, value)
        Authenticator.from_file(DeskSettings().tokens_file)


def test_only_the_inbox_uses_the_development_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    inbox = services["webhook-inbox"]
    assert inbox["build"]["target"] == "devtools"
    assert inbox["command"][:3] == ["python", "-m", "devtools.inbox"]
    assert inbox["image"] != services["ingest"]["image"]
    for name in SAFEGUARD:
        build = services[name]["build"]
        assert "target" not in build, f"{name} must run the production stage"
    stages = re.findall(r"^FROM \S+ AS (\S+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert "devtools" in stages
    assert stages[-1] != "devtools", "the default build target must not be the devtools stage"
